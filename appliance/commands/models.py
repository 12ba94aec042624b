"""`appliance models list|show|register|gate|activate|rollback|history`: the model registry.

These open the store directly, so they work when no daemon runs (with `appliance serve`
running, use its API). They call the same registry service as the API, so activation,
rollback, registration and gating are audited alike, as `cli:<login name>`. Activation of a
candidate that failed a gate is refused (exit 4) naming the gate, unless --force with a
--reason, which is audited.
"""

from __future__ import annotations

import argparse
from typing import Any

import msgspec

from appliance.commands._common import (
    add_home,
    add_json,
    cli_actor,
    print_json,
    print_table,
)
from appliance.config import load_config
from appliance.estimators.placement import placement_table
from appliance.records import GateVerdict, ModelVersion
from appliance.registry import ServingService

EXIT_REFUSED = 4


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("models", help="list, register, gate, activate, roll back models",
                              description=__doc__)
    sub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        a = sub.add_parser(name, help=help_text)
        add_home(a)
        add_json(a)
        a.add_argument("--actor", default=None,
                       help="who does this, audited as cli:NAME (default: the login name)")
        return a

    action("list", "every registered version").set_defaults(func=handle_list)
    a = action("show", "one version with its gate report")
    a.add_argument("version")
    a.set_defaults(func=handle_show)
    a = action("register", "copy a candidate model folder into the registry")
    a.add_argument("folder")
    a.set_defaults(func=handle_register)
    a = action("gate", "run the promotion gates on a version")
    a.add_argument("version")
    a.set_defaults(func=handle_gate)
    a = action("activate", "serve a version (load, warm, swap)")
    a.add_argument("version")
    a.add_argument("--force", action="store_true", help="override failed gates (needs --reason)")
    a.add_argument("--reason", default=None, help="why (stored in the activation log)")
    a.set_defaults(func=handle_activate)
    a = action("rollback", "back to the previous active version, or to VERSION")
    a.add_argument("version", nargs="?", default=None)
    a.add_argument("--reason", default=None)
    a.set_defaults(func=handle_rollback)
    action("history", "the activation log, newest first").set_defaults(func=handle_history)


def _open(args: argparse.Namespace) -> ServingService:
    config = load_config(args.home)
    return ServingService.open(config.home, config.gates)


def _actor(args: argparse.Namespace) -> str:
    return cli_actor(args.actor)


_LIST_COLUMNS = ["version", "status", "architecture", "parent", "created_at", "gates"]


def _summary(row: ModelVersion) -> dict[str, Any]:
    gates = row.gate_report.gates if row.gate_report else ()
    text = ",".join(f"{g.gate}:{g.status}" for g in gates) or "-"
    return {"version": row.version, "status": row.status, "architecture": row.architecture,
            "parent": row.parent, "created_at": row.created_at, "gates": text}


def handle_list(args: argparse.Namespace) -> int:
    service = _open(args)
    try:
        rows = service.list_versions()
        if args.json:
            print_json([_summary(r) | {"gate_report": r.gate_report, "metrics": r.metrics}
                        for r in rows])
        else:
            print_table([_summary(r) for r in rows], _LIST_COLUMNS)
    finally:
        service.close()
    return 0


def handle_show(args: argparse.Namespace) -> int:
    service = _open(args)
    try:
        row = service.show(args.version)
    finally:
        service.close()
    if args.json:
        print_json(row)
        return 0
    fields = msgspec.structs.asdict(row)
    for key in ("version", "status", "architecture", "parent", "created_at", "path",
                "dataset_hash"):
        print(f"{key:13} {fields[key] if fields[key] is not None else '-'}")
    print()
    print(placement_table((row.manifest or {}).get("placement")))
    _print_report(row.gate_report)
    return 0


def handle_register(args: argparse.Namespace) -> int:
    service = _open(args)
    try:
        row = service.register(args.folder, _actor(args))
    finally:
        service.close()
    if args.json:
        print_json(_summary(row) | {"gate_report": row.gate_report})
    else:
        print(f"registered {row.version} ({row.status})")
        _print_report(row.gate_report)
    return 0 if row.status != "rejected" else EXIT_REFUSED


def handle_gate(args: argparse.Namespace) -> int:
    service = _open(args)
    try:
        report = service.gate(args.version, _actor(args))
    finally:
        service.close()
    if args.json:
        print_json(report.as_dict())
    else:
        _print_report(report.as_verdict())
    return 0 if report.passed else EXIT_REFUSED


def handle_activate(args: argparse.Namespace) -> int:
    service = _open(args)
    try:
        done = service.activate(args.version, _actor(args), force=args.force,
                                reason=args.reason)
    finally:
        service.close()
    if args.json:
        print_json(done)
    elif not done.get("changed", True):
        print(f"{args.version} is already active")
    else:
        forced = " (forced past failed gates)" if done.get("forced") else ""
        print(f"activated {done['version']} (was {done['previous_version'] or 'none'}), "
              f"loaded in {done['load_s']:.2f} s{forced}")
    return 0


def handle_rollback(args: argparse.Namespace) -> int:
    service = _open(args)
    try:
        done = service.rollback(args.version, _actor(args), args.reason)
    finally:
        service.close()
    if args.json:
        print_json(done)
    else:
        print(f"rolled back to {done['version']} (was {done['previous_version']})")
    return 0


def handle_history(args: argparse.Namespace) -> int:
    service = _open(args)
    try:
        rows = service.history()
    finally:
        service.close()
    if args.json:
        print_json(rows)
    else:
        print_table([msgspec.to_builtins(a) for a in rows],
                    ["at", "action", "version", "previous_version", "actor", "reason"])
    return 0


def _print_report(report: GateVerdict | None) -> None:
    if report is None or not report.gates:
        print("gates        not run")
    for g in report.gates if report else ():
        print(f"  {g.gate:10} {g.status:22} {g.summary}")
    for name, note in (("rejected", report and report.rejected),
                       ("removed", report and report.removed)):
        if note:
            print(f"  {name:10} {note.why} ({note.by}, {note.at})")
    if report is not None and report.recovery:
        print(f"  recovery   {report.recovery}")
