"""`appliance labels import FILE` / `appliance labels export OUT`: label spreadsheets.

The layout is that of shared/data/setitec/labels.csv (path, entry_mm, transition_mm,
exit_mm, method, confidence, notes); .csv or .xlsx.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from appliance.cli import EXIT_OK, EXIT_REJECTED, EXIT_USAGE
from appliance.commands._common import add_home, add_json, cli_actor, print_json
from appliance.errors import ValidationError
from appliance.home import resolve_home
from appliance.store import Store


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("labels", help="import or export label spreadsheets (CSV/XLSX)")
    sub = p.add_subparsers(dest="labels_command", metavar="ACTION", required=True)

    imp = sub.add_parser(
        "import",
        help="import labels from FILE.csv or FILE.xlsx",
        description="Import labels keyed by source file name, path relative to the ingest "
        "folder, or hole id. Bad rows are reported (row number and reason), good rows are "
        "still imported. Exit 0: all rows fine; 3: some rows rejected; 2: unusable file.",
    )
    imp.add_argument("file", metavar="FILE", type=Path)
    imp.add_argument("--by", default="import", metavar="NAME",
                     help="who the imported labels are attributed to (default: import)")
    add_home(imp)
    add_json(imp)
    imp.set_defaults(func=handle_import)

    exp = sub.add_parser("export", help="export the latest label of every hole to OUT.csv/.xlsx")
    exp.add_argument("out", metavar="OUT", type=Path)
    add_home(exp)
    add_json(exp)
    exp.set_defaults(func=handle_export)


def handle_import(args: argparse.Namespace) -> int:
    from appliance.store.label_files import import_labels, read_rows
    from appliance.store.labels import by_problem

    try:
        problem = by_problem(args.by)  # the rule every label is held to, said once, not per row
        if problem:
            raise ValidationError(problem)
        read_rows(args.file)  # an unusable file is a usage error, before opening the store
    except ValidationError as exc:
        print(f"appliance labels import: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with Store.open(resolve_home(args.home)) as store:
        report = import_labels(store, args.file, by=args.by)
        store.audit(cli_actor(), "labels-import", str(args.file),
                    {"by": args.by, **{k: len(v) for k, v in report.as_json().items()}})
    if args.json:
        print_json(report.as_json())
    else:
        for r in report.rejected:
            print(f"{args.file} row {r['row']}: rejected ({r['key']}): {r['error']}")
        print(f"{len(report.imported)} imported, {len(report.unchanged)} unchanged, "
              f"{len(report.rejected)} rejected")
    return EXIT_REJECTED if report.rejected else EXIT_OK


def handle_export(args: argparse.Namespace) -> int:
    from appliance.store.label_files import export_labels

    try:
        with Store.open(resolve_home(args.home)) as store:
            n = export_labels(store, args.out)
    except ValidationError as exc:
        print(f"appliance labels export: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print_json({"out": str(args.out), "rows": n})
    else:
        print(f"{n} labels written to {args.out}")
    return EXIT_OK
