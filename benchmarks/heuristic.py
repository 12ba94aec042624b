"""Rule-based estimator: speed and accuracy (run by hand: python benchmarks/heuristic.py).

- ms per hole on synthetic holes (target <= 2 ms), with the time to build the
  grid profile alone as a ratio measured in the same run;
- read_trace (profile + ramps, what every served estimate pays) ms per hole, and the ramp
  edges of those holes' slope peaks found all at once (reading.ramp_edges_many, what
  find_ramps uses) against one run_edge walk per peak, the straightforward way;
- accuracy on 1,000 synthetic holes drawn with a seed never used in development
  (targets: MAE <= 0.15 mm per point, presence right on >= 99 % of holes), per stack;
- the real labelled logs of ../shared/data/setitec/labels.csv per source group, when
  ../shared is there (measured, not tuned).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from appliance.estimators.heuristic import estimate_heuristic, read_trace
from appliance.estimators.reading import (
    GAP_MM,
    GRID_MM,
    RAMP_SHARE,
    build_profile,
    detection_slope,
    ramp_edges_many,
    run_edge,
)
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


def _best_cpu_s(fn, items: list, rounds: int = 3) -> float:  # noqa: ANN001
    """Best CPU seconds over `rounds` passes of fn over items."""
    best = float("inf")
    for _ in range(rounds):
        c0 = time.process_time()
        for it in items:
            fn(it)
        best = min(best, time.process_time() - c0)
    return best


def _edges_per_peak(case: tuple[np.ndarray, np.ndarray]) -> None:
    slope, peaks = case
    gap = int(round(GAP_MM / GRID_MM))
    for pk in peaks.tolist():
        low = (1.0 if slope[pk] >= 0 else -1.0) * slope < RAMP_SHARE * abs(float(slope[pk]))
        run_edge(low, pk, gap, -1)
        run_edge(low, pk, gap, +1)


def _print_reading_speed(traces: list) -> None:  # noqa: ANN001
    """read_trace per hole, and the edges of every slope peak: all at once vs per peak."""
    ms = 1000 * _best_cpu_s(read_trace, traces) / len(traces)
    cases = []
    for r in filter(None, (read_trace(t) for t in traces)):
        slope = detection_slope(r.prof)
        mag = np.abs(slope)
        cases.append((slope, np.flatnonzero((mag[1:-1] >= mag[:-2]) & (mag[1:-1] > mag[2:])
                                            & (mag[1:-1] >= 0.3)) + 1))
    gap = int(round(GAP_MM / GRID_MM))
    fast = _best_cpu_s(lambda c: ramp_edges_many(c[0], c[1], RAMP_SHARE, gap), cases)
    slow = _best_cpu_s(_edges_per_peak, cases)
    peaks = sum(len(c[1]) for c in cases) / max(len(cases), 1)
    print(f"read_trace: {ms:.2f} ms of CPU per hole; edges of {peaks:.0f} slope peaks per "
          f"hole: {1000 * fast / len(cases):.3f} ms all at once vs {1000 * slow / len(cases):.3f}"
          f" ms per peak ({slow / fast:.1f}x)")


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
    _print_reading_speed(traces[:300])

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
