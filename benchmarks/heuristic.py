"""Rule-based estimator: speed and accuracy (run by hand: python benchmarks/heuristic.py).

- ms per hole on synthetic holes (target <= 2 ms), with the time to build the
  grid profile alone as a ratio measured in the same run;
- accuracy on 1,000 synthetic holes drawn with a seed never used in development
  (targets: MAE <= 0.15 mm per point, presence right on >= 99 % of holes), per stack;
- the real labelled logs of ../shared/data/setitec/labels.csv per source group, when
  ../shared is there (measured, not tuned).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from appliance.estimators.heuristic import estimate_heuristic
from appliance.estimators.reading import build_profile
from appliance.evaluation import evaluate
from appliance.points import POINT_NAMES
from appliance.synth import generate

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "setitec"


def _print_report(title: str, d: dict) -> None:
    print(title)
    print(f"  {'point':<11}{'n':>5}{'MAE mm':>9}{'<=0.25':>8}{'<=0.5':>8}"
          f"{'tp':>6}{'fp':>5}{'fn':>5}{'tn':>5}")
    for p in POINT_NAMES:
        m, pr = d["points"][p], d["presence"][p]
        mae = "-" if m["mae_mm"] is None else f"{m['mae_mm']:.3f}"
        w1 = "-" if m["within_0_25"] is None else f"{m['within_0_25']:.3f}"
        w2 = "-" if m["within_0_5"] is None else f"{m['within_0_5']:.3f}"
        print(f"  {p:<11}{m['n']:>5}{mae:>9}{w1:>8}{w2:>8}"
              f"{pr['tp']:>6}{pr['fp']:>5}{pr['fn']:>5}{pr['tn']:>5}")


def _mm(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=777_000_123)  # never used in development
    args = ap.parse_args()

    holes = generate(args.n, args.seed)
    traces = [h.trace for h in holes]
    for t in traces[:20]:
        estimate_heuristic(t)  # warm
    best = best_cpu = best_prof = float("inf")
    estimates = []
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        estimates = [estimate_heuristic(t) for t in traces]
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
        c0 = time.process_time()
        for t in traces:
            build_profile(t.depth_mm, t.torque_a, t.step)
        best_prof = min(best_prof, time.process_time() - c0)
    ms = best * 1000 / len(traces)
    ms_cpu = best_cpu * 1000 / len(traces)
    # CPU time as well as wall time: on a shared machine the wall clock counts the wait
    print(f"estimate_heuristic: {ms:.2f} ms per hole wall, {ms_cpu:.2f} ms of CPU (best of 3 "
          f"over {len(traces)} holes; target <= 2 ms: {'met' if ms <= 2 else 'NOT met'} wall, "
          f"{'met' if ms_cpu <= 2 else 'NOT met'} CPU); building the profile is "
          f"{best_prof / best_cpu:.2f} of it")

    report = evaluate(estimates, [h.truth for h in holes],
                      [{"stack": h.spec.stack_type, "exit": h.spec.exit_style} for h in holes])
    d = report.as_dict()
    _print_report(f"\nsynthetic, {args.n} holes, seed {args.seed}: presence right on "
                  f"{100 * d['presence']['holes_all_right']:.1f} % of holes", d)
    ok = all(d["points"][p]["mae_mm"] is None or d["points"][p]["mae_mm"] <= 0.15
             for p in POINT_NAMES) and d["presence"]["holes_all_right"] >= 0.99
    print(f"  targets (MAE <= 0.15 mm per point, presence >= 99 %): {'met' if ok else 'NOT met'}")
    for stack, rep in d["groups"]["stack"].items():
        maes = " ".join(f"{p} {_mm(rep['points'][p]['mae_mm'])}" for p in POINT_NAMES)
        print(f"  {stack:<12} n={rep['n']:<4} MAE {maes}  presence "
              f"{100 * rep['presence']['holes_all_right']:.1f} %")

    labels = SHARED / "labels.csv"
    if not labels.is_file():
        print("\n../shared is absent: no real-log figures")
        return
    from appliance.estimators import load_estimator
    from appliance.evaluation import evaluate_labelled

    run = evaluate_labelled(load_estimator("heuristic"), labels)
    real = run.report.as_dict()
    _print_report(f"\nreal labelled logs ({real['n']} holes, {len(run.failures)} not parsed)",
                  real)
    print("\n  per source group: MAE mm (n) entry / transition / exit; presence right")
    for src, rep in real["groups"]["source"].items():
        cells = []
        for p in POINT_NAMES:
            m = rep["points"][p]
            cells.append("-" if m["mae_mm"] is None else f"{m['mae_mm']:.3f} ({m['n']})")
        print(f"  {src:<15} {' / '.join(cells):<44} "
              f"{100 * rep['presence']['holes_all_right']:.0f} % of {rep['n']}")


if __name__ == "__main__":
    main()
