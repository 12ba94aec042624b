"""Latency gate: the candidate's per-hole time within `factor` of the active model's.

Both are timed in the same run, interleaved hole by hole, so that load from other processes
on a shared CPU hits both alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np

from appliance.engine.ensemble import Engine
from appliance.gates.report import FAIL, PASS, SKIPPED, GateResult
from appliance.trace import Trace

GATE = "latency"
FACTOR = 1.5
ROUNDS = 7
MAX_HOLES = 8

# one timed call of a model; its result is not looked at
Task = Callable[[Engine], object]


def check_latency(
    candidate: Engine,
    reference: Engine | None,
    traces: Sequence[Trace] = (),
    factor: float = FACTOR,
    rounds: int = ROUNDS,
) -> GateResult:
    """Time one hole at a time (how the appliance serves) on the given traces."""
    if reference is None:
        return GateResult(GATE, SKIPPED, "no active model to compare with", {"factor": factor})
    tasks = _tasks(traces)
    if not traces:
        rounds *= 3  # one small input: more rounds for the same confidence
    for task in tasks:  # first calls allocate; keep them out of the figures
        task(candidate)
        task(reference)
    cand: list[list[float]] = [[] for _ in tasks]
    ref: list[list[float]] = [[] for _ in tasks]
    for _ in range(rounds):
        for k, task in enumerate(tasks):
            cand[k].append(_timed(task, candidate))
            ref[k].append(_timed(task, reference))
    # Per input the fastest of the rounds: other processes only ever add time, so the minimum
    # is the steadiest estimate of what the model itself costs on a shared CPU.
    c_ms = statistics.fmean(min(t) for t in cand) * 1000
    r_ms = statistics.fmean(min(t) for t in ref) * 1000
    ratio = c_ms / r_ms if r_ms > 0 else float("inf")
    details = {"candidate_ms": c_ms, "reference_ms": r_ms, "ratio": ratio, "factor": factor,
               "reference": reference.version, "samples": rounds * len(tasks),
               "input": "traces" if traces else "zeros"}
    summary = (f"{c_ms:.2f} ms per hole vs {r_ms:.2f} ms for {reference.version} "
               f"(x{ratio:.2f}, limit x{factor})")
    return GateResult(GATE, PASS if ratio <= factor else FAIL, summary, details)


def _tasks(traces: Sequence[Trace]) -> list[Task]:
    if traces:
        return [_one_hole(t) for t in list(traces)[:MAX_HOLES]]
    # No traces: each model on an input of its own feature spec's shape (features excluded).
    return [_one_input]


def _one_hole(trace: Trace) -> Task:
    return lambda engine: engine.estimate_many([trace])


def _one_input(engine: Engine) -> None:
    spec = engine.spec
    engine.run(np.zeros((1, spec.n_channels, spec.length), np.float32),
               np.zeros((1, spec.n_scalars), np.float32))


def _timed(task: Task, engine: Engine) -> float:
    t0 = time.perf_counter()
    task(engine)
    return time.perf_counter() - t0

