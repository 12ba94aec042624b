"""Micro-batched estimation: concurrent requests share model calls, each gets its own answer."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from model_fixtures import build_model_folder, ramp_trace

from appliance.engine import Engine
from appliance.services.batching import EstimateBatcher


def test_concurrent_estimates_are_batched_and_each_gets_its_own(tmp_path: Path) -> None:
    engine = Engine.from_dir(build_model_folder(tmp_path, "m"))
    traces = [ramp_trace(entry_mm=3.0 + i * 0.25, exit_mm=15.0 + i * 0.1, seed=i,
                         source=f"h{i}") for i in range(12)]
    expected = [engine.estimate(t) for t in traces]
    sizes: list[int] = []

    def slow_many(batch):  # noqa: ANN001, ANN202 - the first call lets the others queue up
        sizes.append(len(batch))
        if len(sizes) == 1:
            time.sleep(0.3)
        return engine.estimate_many(batch)

    batcher = EstimateBatcher(slow_many, max_batch=8)
    results: dict[int, object] = {}

    def ask(i: int) -> None:
        results[i] = batcher.estimate(traces[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(traces))]
    for t in threads:
        t.start()
        time.sleep(0.005)
    for t in threads:
        t.join(timeout=30)
    batcher.close()
    assert [results[i] for i in range(len(traces))] == expected
    assert sum(sizes) == len(traces) and max(sizes) > 1 and max(sizes) <= 8
    assert batcher.batches == len(sizes) < len(traces)


def test_a_failing_batch_fails_every_waiter() -> None:
    def broken(batch):  # noqa: ANN001, ANN202
        raise ValueError("member exploded")

    batcher = EstimateBatcher(broken)
    with pytest.raises(ValueError, match="member exploded"):
        batcher.estimate(ramp_trace())
    batcher.close()
    with pytest.raises(RuntimeError, match="shutting down"):
        batcher.estimate(ramp_trace())
