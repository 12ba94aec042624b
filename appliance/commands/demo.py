"""`appliance demo`: seed a home with the bundled example holes, list them, then serve.

The README's first command runs this on the default home, so a new user sees the whole
appliance working (store, shipped baseline, REST API) without bringing drill logs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from appliance.commands._common import add_home, print_table
from appliance.records import Hole

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "demo", help="ingest the bundled example holes into the home, list them, then serve",
        description="Seed the home with the bundled synthetic example holes (re-running it "
                    "stores nothing twice), list them, then start the daemon as "
                    "`appliance serve` does.")
    add_home(p)
    p.add_argument("--port", type=int, default=None, help="TCP port (default 8470)")
    p.add_argument("--no-serve", action="store_true", help="seed and list only")
    p.set_defaults(func=run)


def seed_examples(home: str | None) -> list[Hole]:
    """Ingest the bundled examples; returns the home's holes."""
    from appliance.home import resolve_home
    from appliance.services.intake import ingest_paths
    from appliance.store import Store

    with Store.open(resolve_home(home)) as store:
        report = ingest_paths(store, [EXAMPLES_DIR])
        print(f"examples: {len(report.ingested)} ingested, {len(report.duplicates)} already "
              f"stored, {len(report.rejected)} rejected")
        return store.list_holes()


def run(args: argparse.Namespace) -> int:
    holes = seed_examples(args.home)
    rows = [{"hole": h.hole_id, "source": h.source, "samples": h.n_samples,
             "depth_min": h.depth_min_mm, "depth_max": h.depth_max_mm,
             "label": "labelled" if h.labelled else "unlabelled"} for h in holes]
    print_table(rows, ["hole", "source", "samples", "depth_min", "depth_max", "label"])
    if args.no_serve:
        return 0
    from appliance.cli import main

    argv = ["serve"] + (["--home", args.home] if args.home else [])
    argv += ["--port", str(args.port)] if args.port else []
    return main(argv)
