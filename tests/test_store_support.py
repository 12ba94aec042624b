"""Helpers for the store tests (no tests here): small but realistic Trace objects."""

from __future__ import annotations

import hashlib

import numpy as np

from appliance.trace import ProgramStep, Trace, TraceMeta


def make_trace(
    seed: int,
    n: int = 400,
    source: str | None = None,
    with_optional: bool = True,
    variant: str = "v9",
) -> Trace:
    """A plausible two-step drilling trace whose content (and so hole id) depends on seed."""
    rng = np.random.default_rng(seed)
    depth = np.cumsum(rng.uniform(0.005, 0.02, n)) + rng.uniform(0.5, 3.0)
    torque = np.where(depth > depth[n // 4], 2.0, 0.0) + rng.normal(0, 0.05, n)
    thrust = np.where(depth > depth[n // 4], 1.0, 0.0) + rng.normal(0, 0.01, n)
    step = np.where(np.arange(n) < n // 2, 1, 2).astype(np.int32)
    stop = np.zeros(n, dtype=np.int64)
    stop[-3:] = 8
    content_hash = hashlib.sha256(f"trace-{seed}-{n}".encode()).hexdigest()
    meta = TraceMeta(
        source=source or f"hole_{seed}.xls",
        content_hash=content_hash,
        variant=variant,
        file_version=9,
        cycle_date="2024-05-08T17:51:30",
        drill_serial=f"SN{seed}",
        head_name="HEAD-A",
        head_global_counter=1000 + seed,
        head_local_counter=seed,
        program=(
            ProgramStep(1, 10.0, 4000.0, 3.0, 0.045, 12.0, 20.0),
            ProgramStep(2, 5.0, 0.0, 0.0, float("inf")),
        ),
        cycle_ok=True,
        predrilled=bool(seed % 2),
        extra={"Pset": str(seed)},
    )
    optional = {}
    if with_optional:
        optional = {
            "torque_empty_a": np.where(step == 1, 0.4, 0.6),
            "thrust_empty_a": np.full(n, 0.2),
            "power_w": torque * 100.0,
        }
    return Trace(meta, depth, torque, thrust, step, stop, **optional)
