"""Inference speed of a model folder's ensemble with onnxruntime (run by hand, not by pytest).

    python benchmarks/infer.py [MODEL_DIR]   (default: models/baseline)

Prints: median ms for one hole (features + every member + decode, through appliance.engine),
total seconds for 100 holes (estimate_many), and the members alone for comparison.
Targets: one hole <= 30 ms, 100 holes <= 1.5 s.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

from appliance.engine import Engine
from appliance.features import make_batch
from appliance.home import baseline_model_dir
from appliance.synth import generate


def main() -> None:
    model_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else baseline_model_dir()
    engine = Engine.from_dir(model_dir)
    traces = [h.trace for h in generate(100, 4242)]
    print(f"model {model_dir} ({engine.n_members} members)")

    for t in traces[:5]:  # warm-up
        engine.estimate(t)
    one = []
    for t in traces:
        t0 = time.perf_counter()
        est = engine.estimate(t)
        one.append((time.perf_counter() - t0) * 1000)
    assert est.estimator == "ensemble", est.note
    print(f"one hole: median {statistics.median(one):.1f} ms, p90 "
          f"{np.percentile(one, 90):.1f} ms (target <= 30 ms)")

    t0 = time.perf_counter()
    engine.estimate_many(traces)
    total = time.perf_counter() - t0
    print(f"100 holes (estimate_many): {total:.2f} s (target <= 1.5 s)")

    spec = engine.spec
    t0 = time.perf_counter()
    batch = make_batch(traces, spec)
    feat = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine.run(batch.x, batch.scalars)
    members = time.perf_counter() - t0
    print(f"  of which features {feat:.3f} s, members on one batch of 100 {members:.3f} s; "
          f"ratio one-by-one/batched {sum(one) / 1000 / total:.2f}")


if __name__ == "__main__":
    main()
