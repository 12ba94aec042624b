"""Does the review queue put the wrong holes first? (run by hand, needs ../shared)

    python benchmarks/review_queue.py [--model DIR] [--gains 1 0.4 2.5]

The model (default: the shipped baseline) answers every real labelled log of ../shared, its
currents scaled as another drill model would log them (benchmarks/rigs.py). A hole is wrong
when a point is > 0.5 mm off its checked label or a presence is wrong. The queue is read as
an operator reads it, from the top: the figure is the share of all wrong holes found in the
first max(20 %, 1.5 x wrong) holes, for the review priority (appliance.engine.review) and,
in the same run, for the order before it (largest member spread first, then the least
confident). Chance finds the queue's share of the holes, 20 % or so.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from rigs import gain, shared_holes

from appliance.engine import Engine
from appliance.engine.review import is_wrong, reliability
from appliance.home import baseline_model_dir
from appliance.points import DepthEstimate


def spread_key(e: DepthEstimate) -> tuple[float, float]:
    spreads = [v for v in e.spread_mm.values() if v is not None]
    confidences = [v for v in e.confidence.values() if v is not None]
    return (-(max(spreads) if spreads else math.inf), min(confidences) if confidences else 0.0)


def found(order: list[int], wrong: np.ndarray) -> tuple[float, int]:
    """Share of the wrong holes in the top of the queue, and how many holes that top is."""
    top = max(math.ceil(0.2 * len(order)), math.ceil(1.5 * int(wrong.sum())))
    hit = int(wrong[order[:top]].sum())
    return (hit / wrong.sum() if wrong.sum() else float("nan")), top


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(baseline_model_dir()))
    ap.add_argument("--gains", type=float, nargs="+", default=[1.0, 0.4, 2.5])
    args = ap.parse_args()
    holes = shared_holes()
    engine = Engine.from_dir(Path(args.model))
    print(f"model {engine.version}: {len(holes)} real labelled holes\n")
    print("| currents | holes | wrong | top of queue | found by priority | found by spread |"
          " mean priority of wrong / right |")
    print("|---|---|---|---|---|---|---|")
    for g in args.gains:
        rig = [gain(g)(h) for h in holes] if g != 1.0 else holes
        ests = engine.estimate_many([h.trace for h in rig])
        wrong = np.array([is_wrong(e.points, h.label) for e, h in zip(ests, rig, strict=True)])
        prio = np.array([e.review_priority if e.review_priority is not None else 1.0
                         for e in ests])
        by_priority = [int(i) for i in np.argsort(-prio, kind="stable")]
        by_spread = sorted(range(len(ests)), key=lambda i: spread_key(ests[i]))
        share_p, top = found(by_priority, wrong)
        share_s, _ = found(by_spread, wrong)
        mean_w = prio[wrong].mean() if wrong.any() else float("nan")
        print(f"| x{g:g} | {len(rig)} | {int(wrong.sum())} | {top} | {share_p:.0%} | "
              f"{share_s:.0%} | {mean_w:.3f} / {prio[~wrong].mean():.3f} |")
        rel = reliability(prio, wrong.astype(float), bins=4)
        print("|   | reliability (mean priority -> share wrong, n): "
              + "; ".join(f"{p:.2f} -> {o:.2f} ({n})" for p, o, n in rel) + " | | | | | |")


if __name__ == "__main__":
    main()
