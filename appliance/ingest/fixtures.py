"""A small hand-made Trace: the seed of writer round trips, fuzzing and quick tests.

No dependency on ../shared: the shape (air, a first layer, a harder second layer, exit)
is drawn by hand with the controller's quantisation.
"""

from __future__ import annotations

import numpy as np

from appliance.trace import ProgramStep, Trace, TraceMeta

TORQUE_QUANTUM_A = 0.049
THRUST_QUANTUM_A = 0.012


def sample_meta(source: str = "fixture") -> TraceMeta:
    return TraceMeta(
        source=source, content_hash="", variant="synthetic", cycle_date="2024-05-08T18:51:30",
        sample_rate_hz=100.0, drill_serial="20100004", head_name="17070141",
        head_global_counter=798, head_local_counter=100,
        program=(ProgramStep(step=1, travel_mm=6.0, rpm=4000.0, feed_mm_s=3.0,
                             feed_mm_rev=0.045, torque_max_a=8.0, thrust_max_a=None),
                 ProgramStep(step=2, travel_mm=9.0, rpm=1000.0, feed_mm_s=0.75,
                             feed_mm_rev=0.045, torque_max_a=0.0, thrust_max_a=0.0)),
        cycle_ok=True,
    )


def sample_trace(n_per_step: int = 150, seed: int = 0, source: str = "fixture") -> Trace:
    """Two steps of `n_per_step` samples each, values on the logs' 3-decimal grid."""
    rng = np.random.default_rng(seed)
    n = 2 * n_per_step
    step = np.repeat(np.array([1, 2], dtype=np.int32), n_per_step)
    feed = np.where(step == 1, 3.0, 0.75) / 100.0
    depth = np.round(0.65 + np.cumsum(feed), 3)
    level = np.interp(depth, [0, 2.0, 2.4, 4.0, 4.4, 6.5, 6.9, 99], [0, 0, 3, 3, 7, 7, 0, 0])
    torque = np.round(np.round((level + rng.normal(0, 0.05, n)) / TORQUE_QUANTUM_A)
                      * TORQUE_QUANTUM_A, 3)
    thrust = np.round(np.round((0.3 * level + rng.normal(0, 0.02, n)) / THRUST_QUANTUM_A)
                      * THRUST_QUANTUM_A, 3)
    stop = np.zeros(n, dtype=np.int64)
    stop[n_per_step - 2:n_per_step] = 64
    stop[-2:] = 8
    return Trace(
        meta=sample_meta(source),
        depth_mm=depth,
        torque_a=torque,
        thrust_a=thrust,
        step=step,
        stop_code=stop,
        torque_empty_a=np.where(step == 1, 5.469, 2.539),
        thrust_empty_a=np.where(step == 1, 0.363, 0.176),
        power_w=np.round(100 + 20 * level),
        rpm=None,
    )
