"""Where the rules misread, does the model follow them? (run by hand)

    python benchmarks/phenomena.py [--model DIR] [--holes 1000] [--seed 777001]

Unseen synthetic holes (the baseline card's exam seed by default), grouped by the field
phenomena the generator draws (appliance.synth: pre-contact bumps, dips inside a layer,
two-stage exits, hard-over-soft stacks, thin first layers, no-load offset steps, other
current scales). Per group: the share of holes the rule-based estimator gets wrong and the
share the model (as served, onnxruntime) gets wrong; wrong = a point > 0.5 mm off its truth
or a presence error. Also the mean review priority of the model's wrong and right holes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from appliance.engine import Engine
from appliance.engine.review import is_wrong
from appliance.estimators.heuristic import estimate_heuristic
from appliance.home import baseline_model_dir
from appliance.synth import generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(baseline_model_dir()))
    ap.add_argument("--holes", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=777_001)
    args = ap.parse_args()
    holes = generate(args.holes, args.seed)
    engine = Engine.from_dir(Path(args.model))
    ests = engine.estimate_many([h.trace for h in holes])
    rules = [estimate_heuristic(h.trace) for h in holes]
    groups: dict[str, list[int]] = {"(none)": []}
    for i, h in enumerate(holes):
        for name in h.spec.phenomena or ("(none)",):
            groups.setdefault(name, []).append(i)
    groups["all"] = list(range(len(holes)))
    print(f"model {engine.version}, {len(holes)} unseen synthetic holes (seed {args.seed})\n")
    print("| phenomenon | holes | rules wrong | model wrong | mean priority, model wrong / right |")
    print("|---|---|---|---|---|")
    for name, idx in groups.items():
        if not idx:
            continue
        rw = np.array([is_wrong(rules[i].points, holes[i].truth) for i in idx])
        mw = np.array([is_wrong(ests[i].points, holes[i].truth) for i in idx])
        prio = np.array([ests[i].review_priority or 0.0 for i in idx])
        pw = f"{prio[mw].mean():.2f}" if mw.any() else "-"
        print(f"| {name} | {len(idx)} | {rw.mean():.1%} | {mw.mean():.1%} | "
              f"{pw} / {prio[~mw].mean():.2f} |")


if __name__ == "__main__":
    main()
