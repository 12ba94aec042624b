"""synthesize(spec) -> SynthHole and generate(n, seed): synthetic holes with exact truth."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np

from appliance.points import DepthPoints
from appliance.synth.signal import (
    DEPTH_QUANTUM_MM,
    THRUST_QUANTUM_A,
    TORQUE_QUANTUM_A,
    Path,
    material_torque,
    quantise,
)
from appliance.synth.spec import StackSpec, random_spec
from appliance.synth.truth import truth_points
from appliance.trace import Trace, TraceMeta

WOBBLE_KNOT_MM = 0.7  # slow wander of a cutting level, as real levels wander
WOBBLE_SHARE = 0.03
LEVEL_NOISE_SHARE = 0.01


@dataclass(frozen=True, eq=False)
class SynthHole:
    trace: Trace
    truth: DepthPoints
    spec: StackSpec
    # per sample of trace, before noise and quantisation (times the drill's current_gain;
    # the truth is read off it divided by that gain)
    noiseless_torque: np.ndarray


def synthesize(spec: StackSpec) -> SynthHole:
    rng = np.random.default_rng(spec.seed)
    path = Path(spec)
    depth_d = np.round(np.round(path.depth / DEPTH_QUANTUM_MM) * DEPTH_QUANTUM_MM, 3)
    mat, thr = material_torque(spec, depth_d, path.fpr)
    # the physical hole at gain 1: the truth is read off this, whatever drill logs it
    clean = spec.air_offset_a + _offset_before_step(spec, path) + path.engaged * mat
    thrust_clean = path.engaged * thr
    gain = spec.current_gain

    n = len(depth_d)
    span = float(depth_d.max() - depth_d.min()) + 2 * WOBBLE_KNOT_MM
    knots = rng.standard_normal(int(span / WOBBLE_KNOT_MM) + 3)
    knot_d = float(depth_d.min()) - WOBBLE_KNOT_MM + WOBBLE_KNOT_MM * np.arange(len(knots))
    wobble = np.interp(depth_d, knot_d, knots) * WOBBLE_SHARE * path.engaged * mat
    # the drill's gain scales the currents and their cutting noise, not the electronics'
    sigma = spec.noise_a + LEVEL_NOISE_SHARE * np.abs(gain * path.engaged * mat)
    noisy = gain * (clean + wobble) + sigma * rng.standard_normal(n)
    thrust = gain * thrust_clean + (0.004 + 0.05 * spec.noise_a) * rng.standard_normal(n)

    torque_empty = 2.0 + 0.75 * path.rpm / 1000.0
    thrust_empty = 0.1 + 0.05 * path.step.astype(float)
    power = np.round((noisy + torque_empty) * path.rpm * 0.00475)

    depth = path.expand(depth_d)
    arrays = {
        "depth_mm": depth,
        "torque_a": path.expand(quantise(noisy, TORQUE_QUANTUM_A)),
        "thrust_a": path.expand(quantise(thrust, THRUST_QUANTUM_A)),
        "step": path.expand(path.step).astype(np.int32),
        "stop_code": path.stop_codes(),
        # logged on the drill's scale, as the net torque is (features read one over the other)
        "torque_empty_a": path.expand(np.round(gain * torque_empty, 3)),
        "thrust_empty_a": path.expand(np.round(thrust_empty, 3)),
        "power_w": path.expand(power),
        "rpm": path.expand(path.rpm),
    }
    digest = hashlib.sha256()
    for name in ("depth_mm", "torque_a", "thrust_a", "step", "stop_code"):
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    meta = TraceMeta(
        source=f"synthetic-{spec.seed}",
        content_hash=digest.hexdigest(),
        variant="synthetic",
        file_version=None,
        cycle_date="2025-01-01T00:00:00",
        sample_rate_hz=100.0,
        head_name="SYNTH",
        head_global_counter=spec.seed % 1_000_000,
        head_local_counter=spec.local_counter,
        program=spec.steps,
        cycle_ok=not spec.aborted,
        extra={"stack": spec.stack_type, "exit_style": spec.exit_style,
               "seed": str(spec.seed), "phenomena": ",".join(spec.phenomena)},
    )
    noiseless = path.expand(gain * clean)
    if spec.fragment_end_mm is not None:
        # air only: the samples up to where the log stops, and no point
        kept = int(np.searchsorted(np.maximum.accumulate(depth), spec.fragment_end_mm,
                                   side="right"))
        arrays = {k: v[:kept] for k, v in arrays.items()}
        digest.update(b"fragment:%d" % kept)
        meta = replace(meta, content_hash=digest.hexdigest(), cycle_ok=False)
        return SynthHole(trace=Trace(meta=meta, **arrays), truth=DepthPoints(None, None, None),
                         spec=spec, noiseless_torque=noiseless[:kept])
    trace = Trace(meta=meta, **arrays)
    # the logged copies of a sample never advance, so the truth reads the distinct samples
    truth = truth_points(spec, depth_d, clean, path.step)
    return SynthHole(trace=trace, truth=truth, spec=spec, noiseless_torque=noiseless)


def _offset_before_step(spec: StackSpec, path: Path) -> np.ndarray | float:
    """offset_before_a on the samples of the program steps before offset_step_mm: the
    controller nets the no-load current out per step, and got it wrong before that one."""
    if spec.offset_step_mm is None or spec.offset_before_a == 0.0:
        return 0.0
    ends = np.cumsum([s.travel_mm for s in spec.steps])
    k = int(np.argmin(np.abs(ends - spec.offset_step_mm)))
    if abs(float(ends[k]) - spec.offset_step_mm) > 0.01:
        raise ValueError(f"offset_step_mm={spec.offset_step_mm} is no step change of the "
                         "program (see with_offset_step)")
    return np.where(path.step <= spec.steps[k].step, spec.offset_before_a, 0.0)


def generate(n: int, seed: int) -> list[SynthHole]:
    """n holes drawn from the field distribution; the same seed gives the same holes."""
    rng = np.random.default_rng(seed)
    return [synthesize(random_spec(rng)) for _ in range(n)]
