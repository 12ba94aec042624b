"""`appliance ingest PATH...`: store drill logs and JSON traces; report each input's fate."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from appliance.cli import EXIT_OK, EXIT_REJECTED, EXIT_USAGE
from appliance.commands._common import add_home, add_json, cli_actor, print_json
from appliance.home import resolve_home
from appliance.store import Store


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "ingest",
        help="ingest Setitec logs / JSON traces (files or folders)",
        description="Ingest Setitec logs and JSON trace messages. Each input is ingested, "
        "recognised as a duplicate, or rejected with its reason (and quarantined). "
        "Exit 0: nothing rejected; 3: some rejected (the rest ingested); 2: usage error.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="file or folder (walked recursively)")
    add_home(p)
    add_json(p)
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    # Imported here: the parsers are only needed by this verb.
    from appliance.config import load_config
    from appliance.services.intake import ingest_paths

    paths = [Path(p) for p in args.paths]
    missing = [p for p in paths if not p.exists()]
    if missing:
        for p in missing:
            print(f"appliance ingest: {p}: no such file or folder", file=sys.stderr)
        return EXIT_USAGE

    progress = _Progress(enabled=sys.stderr.isatty())

    def on_outcome(kind: str, entry: dict[str, Any]) -> None:
        progress.tick()
        if not args.json:
            progress.clear()
            print(_line(kind, entry), flush=True)

    # the home's settings bound a hole's samples here as in the daemon
    limit = load_config(args.home).max_samples_per_hole
    with Store.open(resolve_home(args.home), max_samples=limit) as store:
        report = ingest_paths(store, paths, on_outcome)
        store.audit(
            cli_actor(), "ingest", ", ".join(str(p) for p in paths),
            {"ingested": len(report.ingested), "duplicates": len(report.duplicates),
             "rejected": len(report.rejected), "companions": len(report.companions)},
        )
    progress.clear()
    if args.json:
        print_json(report.as_json())
    else:
        print(
            f"{len(report.ingested)} ingested, {len(report.duplicates)} duplicates, "
            f"{len(report.rejected)} rejected, {len(report.companions)} companion messages used "
            f"({report.n_files} files)"
        )
    return EXIT_REJECTED if report.rejected else EXIT_OK


def _line(kind: str, entry: dict[str, Any]) -> str:
    if kind == "ingested":
        return f"ingested   {entry['source']} -> {entry['hole_id']} ({entry['samples']} samples)"
    if kind == "duplicate":
        return f"duplicate  {entry['source']} = {entry['hole_id']} (already stored)"
    if kind == "rejected":
        error = entry["error"]
        if not error.startswith(entry["source"]):  # an IngestError already names it
            error = f"{entry['source']}: {error}"
        return f"rejected   {error}"
    return f"companion  {entry['source']} (used for metadata)"


class _Progress:
    """A running count on stderr, only when it is a terminal (never in pipes or logs)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.count = 0
        self._shown = False

    def tick(self) -> None:
        self.count += 1
        if self.enabled:
            sys.stderr.write(f"\r{self.count} files...")
            sys.stderr.flush()
            self._shown = True

    def clear(self) -> None:
        if self._shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self._shown = False
