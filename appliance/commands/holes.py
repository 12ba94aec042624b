"""`appliance holes`: the stored holes with their label status."""

from __future__ import annotations

import argparse

import msgspec

from appliance.cli import EXIT_OK
from appliance.commands._common import add_home, add_json, print_json, print_table
from appliance.home import resolve_home
from appliance.records import Hole, Label
from appliance.services.holes import review_key, with_estimate
from appliance.store import Store


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("holes", help="list stored holes and their label status")
    add_home(p)
    add_json(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--labelled", dest="labelled", action="store_const", const=True,
                       help="only holes with a confirmed label")
    which.add_argument("--unlabelled", dest="labelled", action="store_const", const=False,
                       help="only holes without a label")
    p.add_argument("--limit", type=int, default=None, help="at most this many holes")
    p.add_argument("--sort", choices=("ingest", "priority"), default="ingest",
                   help="ingest order (default), or review priority: the chance the stored "
                        "estimate is wrong, highest first (never estimated holes first), "
                        "the daemon's review-queue order; adds a prio column")
    p.set_defaults(func=handle, labelled=None)


def handle(args: argparse.Namespace) -> int:
    with Store.open(resolve_home(args.home)) as store:
        if args.sort == "priority":
            rows = _by_priority(store, args.labelled, args.limit)
        else:
            rows = store.list_holes(labelled=args.labelled, limit=args.limit)
    if args.json:
        print_json(rows)
        return EXIT_OK
    columns = ["id", "source", "date", "samples", "depth_mm", "label"]
    if args.sort == "priority":
        columns.insert(1, "prio")
    table = [
        {
            "id": r.hole_id,
            "source": r.source,
            "date": r.cycle_date,
            "samples": r.n_samples,
            "depth_mm": f"{r.depth_min_mm:.2f}..{r.depth_max_mm:.2f}"
            if r.depth_min_mm is not None and r.depth_max_mm is not None else None,
            "label": _label(r.label),
            "prio": _percent(r.review_priority),
        }
        for r in rows
    ]
    print_table(table, columns)
    print(f"{len(rows)} holes")
    return EXIT_OK


def _by_priority(store: Store, labelled: bool | None, limit: int | None) -> list[Hole]:
    """The holes in the review queue's order (appliance.services.holes.review_key), each with
    its latest estimate as the daemon serves it; the limit cuts after sorting."""
    estimates = {p.hole_id: msgspec.structs.asdict(p.estimate)
                 for p in store.latest_predictions()}
    rows = store.list_holes(labelled=labelled)
    rows.sort(key=lambda r: review_key(estimates.get(r.hole_id)))
    rows = rows[:limit] if limit is not None else rows
    return [with_estimate(r, estimates.get(r.hole_id)) for r in rows]


def _percent(value: float | None) -> str | None:
    return None if value is None else f"{value * 100:.0f}%"


def _label(label: Label | None) -> str:
    if label is None:
        return "unlabelled"
    pts = [label.entry_mm, label.transition_mm, label.exit_mm]
    text = "/".join("-" if v is None else f"{v:.2f}" for v in pts)
    return f"labelled {text} by {label.by}"
