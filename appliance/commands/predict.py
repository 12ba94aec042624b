"""`appliance predict FILE...`: estimate depth points of files without ingesting them.

Which model: --model (a registered version under <home>/models, or a model folder path);
else the home's active model; with no store in the home at all, the shipped baseline
read-only (nothing is created); with none of these, the rule-based estimator.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from appliance.commands._common import add_home, add_json, print_json, print_table
from appliance.engine import ActiveModel, Engine
from appliance.errors import IngestError, NotFoundError
from appliance.home import baseline_model_dir, resolve_home
from appliance.points import POINT_NAMES, DepthEstimate
from appliance.registry.folders import models_dir
from appliance.store import Store, db_path

EXIT_REJECTED = 3


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("predict", help="estimate entry/transition/exit of log files",
                              description=__doc__)
    p.add_argument("files", nargs="+", metavar="FILE", help="Setitec logs or JSON traces")
    add_home(p)
    p.add_argument("--model", default=None, metavar="VERSION",
                   help="a registered version, or a model folder (default: the active model)")
    add_json(p)
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from appliance.ingest import parse_file

    model = ActiveModel(load_engine(args.home, args.model))
    results: list[dict[str, Any]] = []
    rejected = 0
    for name in args.files:
        try:
            trace = parse_file(Path(name))
        except IngestError as exc:
            print(f"appliance predict: {exc}", file=sys.stderr)
            rejected += 1
            continue
        except OSError as exc:
            print(f"appliance predict: {name}: cannot read ({exc.strerror})", file=sys.stderr)
            rejected += 1
            continue
        results.append(as_json(name, model.estimate(trace)))
    if args.json:
        print_json(results)
    else:
        rows = [{"source": r["source"], **{p: r[f"{p}_mm"] for p in POINT_NAMES},
                 "spread": _max_spread(r["spread_mm"]), "estimator": r["estimator"],
                 "model": r["model_version"]} for r in results]
        print_table(rows, ["source", *POINT_NAMES, "spread", "estimator", "model"])
    return EXIT_REJECTED if rejected else 0


def load_engine(home_arg: str | None, model: str | None) -> Engine | None:
    home = resolve_home(home_arg)
    if model is not None:
        path = Path(model)
        if (path / "manifest.json").is_file():
            return Engine.from_dir(path)
        folder = models_dir(home) / model
        if not folder.is_dir():
            raise NotFoundError(f"model {model!r}: neither a model folder nor a version "
                                f"registered under {models_dir(home)}")
        return Engine.from_dir(folder)
    if db_path(home).is_file():
        with Store.open(home, read_only=True) as store:
            version = store.active_version()
            active = Path(store.get_model(version).path) if version else None
        return Engine.from_dir(active) if active else None
    baseline = baseline_model_dir()
    if (baseline / "manifest.json").is_file():
        return Engine.from_dir(baseline)
    return None


def as_json(source: str, est: DepthEstimate) -> dict[str, Any]:
    return {
        "source": source,
        "entry_mm": est.entry_mm,
        "transition_mm": est.transition_mm,
        "exit_mm": est.exit_mm,
        "spread_mm": dict(est.spread_mm),
        "presence": dict(est.presence),
        "model_version": est.model_version,
        "estimator": est.estimator,
    }


def _max_spread(spread: dict[str, float | None]) -> float | None:
    values = [v for v in spread.values() if v is not None]
    return max(values) if values else None
