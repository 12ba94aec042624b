"""`appliance holes`: the stored holes with their label status."""

from __future__ import annotations

import argparse

from appliance.cli import EXIT_OK
from appliance.commands._common import add_home, add_json, print_json, print_table
from appliance.home import resolve_home
from appliance.store import Store


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("holes", help="list stored holes and their label status")
    add_home(p)
    add_json(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--labelled", dest="labelled", action="store_const", const=True,
                       help="only holes with a confirmed label")
    which.add_argument("--unlabelled", dest="labelled", action="store_const", const=False,
                       help="only holes without a label")
    p.add_argument("--limit", type=int, default=None, help="at most this many holes")
    p.set_defaults(func=handle, labelled=None)


def handle(args: argparse.Namespace) -> int:
    with Store.open(resolve_home(args.home)) as store:
        rows = store.list_holes(labelled=args.labelled, limit=args.limit)
    if args.json:
        print_json(rows)
        return EXIT_OK
    table = [
        {
            "id": r["hole_id"],
            "source": r["source"],
            "date": r["cycle_date"],
            "samples": r["n_samples"],
            "depth_mm": f"{r['depth_min']:.2f}..{r['depth_max']:.2f}"
            if r["depth_min"] is not None else None,
            "label": _label(r),
        }
        for r in rows
    ]
    print_table(table, ["id", "source", "date", "samples", "depth_mm", "label"])
    print(f"{len(rows)} holes")
    return EXIT_OK


def _label(row: dict) -> str:
    if row["label_status"] != "labelled":
        return "unlabelled"
    pts = [row["entry_mm"], row["transition_mm"], row["exit_mm"]]
    text = "/".join("-" if v is None else f"{v:.2f}" for v in pts)
    return f"labelled {text} by {row['label_by']}"
