"""Synthetic generator throughput (run by hand: python benchmarks/synth.py [--n 2000]).

Prints holes/s for generate(n, seed) (target >= 500 holes/s), the share of each case in
the drawn field distribution, and, as a yardstick measured in the same run, the ratio of
one hole's generation time to writing it as a v9 Setitec file.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from appliance.synth import generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=90210)
    args = ap.parse_args()

    generate(20, args.seed + 1)  # warm imports and caches
    best = best_cpu = float("inf")
    holes = []
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        holes = generate(args.n, args.seed)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    rate, rate_cpu = args.n / best, args.n / best_cpu
    samples = np.array([len(h.trace) for h in holes])
    # CPU time as well as wall time: on a shared machine the wall clock counts the wait
    print(f"generate({args.n}): {rate:.0f} holes/s wall, {rate_cpu:.0f} holes/s of CPU time "
          f"(best of 3; {samples.mean():.0f} samples per hole, max {samples.max()})")
    print(f"target >= 500 holes/s: {'met' if rate >= 500 else 'NOT met'} (wall), "
          f"{'met' if rate_cpu >= 500 else 'NOT met'} (CPU)")

    from appliance.ingest.setitec_writer import write_setitec

    sub = holes[:200]
    c0 = time.process_time()
    for h in sub:
        write_setitec(h.trace, variant="v9")
    write_s = (time.process_time() - c0) / len(sub)
    print(f"writing a v9 file takes {write_s * 1000:.2f} ms of CPU: generating a hole is "
          f"{(best_cpu / args.n) / write_s:.2f}x of it")

    specs = [h.spec for h in holes]
    share = {
        "aborted (no exit)": np.mean([s.aborted for s in specs]),
        "starts inside (no entry)": np.mean([s.starts_inside for s in specs]),
        "single layer (no transition)": np.mean([len(s.layers) == 1 for s in specs]),
        "trailing exit": np.mean([s.exit_style == "trailing" for s in specs]),
        "countersink": np.mean([s.countersink for s in specs]),
        "with a back-off": np.mean([any(b > 0 for b in s.backoff_mm) for s in specs]),
    }
    for name, v in share.items():
        print(f"  {name:<30} {100 * v:5.1f} %")
    stacks: dict[str, int] = {}
    for s in specs:
        stacks[s.stack_type] = stacks.get(s.stack_type, 0) + 1
    print("  stacks: " + ", ".join(f"{k} {v}" for k, v in sorted(stacks.items())))


if __name__ == "__main__":
    main()
