"""Leave-one-source-group-out on the real labelled logs (run by hand, not by pytest).

    python benchmarks/loso.py --synthetic-model DIR [--members 5] [--epochs 10] [--head-only]

For each source group g of ../shared/data/setitec/labels.csv (MANIFEST.csv source_group):
 (a) the rule-based estimator on g;
 (b) a model trained on synthetic holes only (DIR, e.g. `appliance train-baseline --no-real
     --out DIR`), ensemble median over its members, on g;
 (c) that model fine-tuned on the real labels of every other group exactly as
     `appliance train --parent` fine-tunes (appliance.train.fit_ensemble: 5 folds grouped by
     source, head first, then all at a lower rate, learnt placement, augmentation), on g.
(b) and (c) answer as the serving engine does (ensemble rule, then points placed on their
ramps). Prints per-group and pooled MAE per point (n holes) and presence agreement, and the
pooled table in markdown for the model card.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from appliance.estimators.heuristic import estimate_heuristic
from appliance.evaluation import evaluate
from appliance.features import FeatureSpec
from appliance.home import repo_root
from appliance.points import POINT_NAMES
from appliance.train.data import real_labelled
from appliance.train.export import read_manifest
from appliance.train.model import ModelConfig, build_model
from appliance.train.run import ensemble_points
from appliance.train.train import TrainOptions, fit_ensemble


def load_members(model_dir: Path, n: int | None = None):
    m = read_manifest(model_dir)
    cfg = ModelConfig.from_dict(m["config"])
    members = []
    for w in m["weights"][:n]:
        model = build_model(m["architecture"], cfg)
        model.load_state_dict(load_file(str(model_dir / w)))
        members.append(model)
    return m, members, FeatureSpec.from_dict(m["feature_spec"])


def to_points(arr: np.ndarray):
    from appliance.points import DepthPoints

    return [DepthPoints(*(None if np.isnan(v) else float(v) for v in row)) for row in arr]


def row(name: str, report) -> str:
    cells = []
    for p in POINT_NAMES:
        pm = report.points[p]
        mae = "-" if pm.mae_mm is None else f"{pm.mae_mm:.3f}"
        cells.append(f"{mae:>6s} ({pm.n:3d})")
    acc = report.overall.presence_accuracy
    return f"  {name:14s} " + "  ".join(cells) + f"  presence {acc:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--synthetic-model", required=True)
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--head-only", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--augment", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    labels = repo_root().parent / "shared" / "data" / "setitec" / "labels.csv"
    holes, problems = real_labelled(labels, labels.parent / "MANIFEST.csv")
    print(f"{len(holes)} real labelled holes, {len(problems)} failed to parse")
    manifest, members, spec = load_members(Path(args.synthetic_model))
    truth = [h.label for h in holes]
    groups = sorted({h.group for h in holes})

    heur = [estimate_heuristic(h.trace).points for h in holes]
    synth = to_points(ensemble_points(members, holes, spec))
    tuned: list = [None] * len(holes)
    t0 = time.monotonic()
    for g in groups:
        test = [i for i, h in enumerate(holes) if h.group == g]
        rest = [h for h in holes if h.group != g]
        opts = TrainOptions(arch=manifest["architecture"], epochs=args.epochs,
                            head_only=args.head_only, folds=min(args.members, 5),
                            threads=args.threads, augment=args.augment)
        fit = fit_ensemble(rest, opts, parent_dir=args.synthetic_model)
        tuned_pts = ensemble_points(fit.members, [holes[i] for i in test], spec)
        for j, i in enumerate(test):
            tuned[i] = to_points(tuned_pts[j:j + 1])[0]
        print(f"  fine-tuned without {g} ({len(test)} holes) in "
              f"{time.monotonic() - t0:.0f} s", flush=True)

    print("\nMAE mm (n holes) per point: entry, transition, exit; presence agreement")
    for g in groups + ["ALL"]:
        idx = [i for i, h in enumerate(holes) if g in ("ALL", h.group)]
        print(f"{g} ({len(idx)} holes)")
        for name, est in (("a heuristic", heur), ("b synthetic", synth),
                          ("c fine-tuned", tuned)):
            print(row(name, evaluate([est[i] for i in idx], [truth[i] for i in idx])))
    print("\n| estimator | entry MAE mm (n) | transition MAE mm (n) | exit MAE mm (n) |"
          " presence right | within 0.5 mm (e/t/x) |")
    print("|---|---|---|---|---|---|")
    for name, est in (("(a) rule-based", heur), ("(b) synthetic only", synth),
                      ("(c) fine-tuned", tuned)):
        rep = evaluate(est, truth)
        cells = [f"{rep.points[p].mae_mm:.4f} ({rep.points[p].n})" for p in POINT_NAMES]
        within = "/".join(f"{rep.points[p].within_0_5:.3f}" for p in POINT_NAMES)
        print(f"| {name} | " + " | ".join(cells)
              + f" | {rep.overall.presence_accuracy:.3f} | {within} |")


if __name__ == "__main__":
    main()
