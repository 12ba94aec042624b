"""`appliance evaluate --estimator heuristic|MODEL_DIR --labels LABELS.csv`: score an
estimator on labelled files (per-point MAE, within 0.25/0.5 mm, presence confusion)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from appliance.cli import EXIT_OK, EXIT_REJECTED
from appliance.commands._common import add_json, print_json, print_table
from appliance.points import POINT_NAMES


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score an estimator on a labels.csv (MAE, within 0.25/0.5 mm, presence)",
        description="Parse every file a labels.csv names (paths relative to the CSV's "
        "folder, or to --root), run the estimator and print per-point metrics, overall and "
        "per group (source folder, variant, stack). Files that fail to parse are listed. "
        "Exit 0; 3 when some files could not be parsed.",
    )
    p.add_argument("--estimator", default="heuristic",
                   help="'heuristic' or a model folder (default heuristic)")
    p.add_argument("--labels", required=True, help="labels.csv")
    p.add_argument("--root", default=None, help="folder the label paths are relative to")
    add_json(p)
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from appliance.estimators import load_estimator
    from appliance.evaluation import evaluate_labelled

    estimator = load_estimator(args.estimator)
    run = evaluate_labelled(estimator, args.labels, args.root)
    data = run.report.as_dict()
    data["estimator"] = estimator.name
    data["failures"] = run.failures
    if args.json:
        print_json(data)
    else:
        _print_report(data)
    for f in run.failures:
        print(f"appliance evaluate: {f['path']}: not evaluated: {f['error']}", file=sys.stderr)
    return EXIT_REJECTED if run.failures else EXIT_OK


def _print_report(data: dict[str, Any]) -> None:
    print(f"estimator {data['estimator']}: {data['n']} holes"
          + (f", {len(data['failures'])} not parsed" if data["failures"] else ""))
    print_table(_rows(data), _COLUMNS)
    for key, by in data["groups"].items():
        print(f"\nby {key}")
        rows = []
        for value, rep in by.items():
            for r in _rows(rep):
                rows.append({key: value, **r})
        print_table(rows, [key, *_COLUMNS])


_COLUMNS = ["point", "n", "mae_mm", "within_0_25", "within_0_5", "tp", "fp", "fn", "tn"]


def _rows(rep: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"point": p, **rep["points"][p],
             **{k: rep["presence"][p][k] for k in ("tp", "fp", "fn", "tn")}}
            for p in POINT_NAMES]
