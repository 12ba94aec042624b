"""From a StackSpec to the samples a Setitec controller would log (100 Hz).

The torque is built as a function of depth: each layer adds its level times the engaged
share of the drill point (quadratic in depth: torque grows with the square of the engaged
radius), so every boundary is a ramp one point length long.
"""

from __future__ import annotations

import numpy as np

from appliance.synth.spec import PRECONTACT_RAMP_MM, THRUST_PER_TORQUE, StackSpec

SAMPLE_RATE_HZ = 100.0
TORQUE_QUANTUM_A = 50.0 / 1024.0  # ~0.049 A, as logged
THRUST_QUANTUM_A = 12.0 / 1024.0  # ~0.012 A
DEPTH_QUANTUM_MM = 1000.0 / 2**18  # ~0.0038 mm encoder resolution
DWELL_ROWS = 3  # a step's last sample is logged this many times (stop code on the copies)
PAUSE_ROWS = 4  # without a back-off the spindle changes speed standing still
FEED_EXPONENT = 0.7  # cutting torque ~ (feed per revolution) ** 0.7
COUNTERSINK_RAMP_MM = 1.5
CREEP_SPAN_MM = 5.0
STOP_STEP_END = 64
STOP_END = 8
STOP_ABORTED = 131074


def _engaged(u: np.ndarray, length: float) -> np.ndarray:
    """Share of the drill point inside the material, `u` mm past a layer's face."""
    x = np.clip(u / max(length, 1e-6), 0.0, 1.0)
    return x * x


class Path:
    """The tool's logged path: one entry per distinct sample, plus how often it is logged."""

    def __init__(self, spec: StackSpec) -> None:
        steps = spec.steps
        ends = np.cumsum([s.travel_mm for s in steps])
        limit = spec.end_depth_mm
        z_parts: list[np.ndarray] = []
        step_parts: list[np.ndarray] = []
        fpr_parts: list[np.ndarray] = []
        eng_parts: list[np.ndarray] = []
        rep_parts: list[np.ndarray] = []
        code_parts: list[np.ndarray] = []
        rpm_parts: list[np.ndarray] = []
        pos = spec.first_depth_mm
        started = False
        last_k = -1
        for k, st in enumerate(steps):
            d_end = float(ends[k])
            if d_end <= pos and not started:
                continue
            fpr = st.feed_mm_rev or (st.feed_mm_s * 60.0 / max(st.rpm, 1.0))
            inc = st.feed_mm_s / SAMPLE_RATE_HZ
            stop = min(d_end, limit)
            if not started:
                x0, first = pos, 0
            else:
                d_prev = float(ends[k - 1])
                back = spec.backoff_mm[k - 1] if k - 1 < len(spec.backoff_mm) else 0.0
                x0, first = d_prev - back, 0
                if back <= 0.0:
                    # standing still while the spindle changes speed: torque ~0
                    z_parts.append(np.full(PAUSE_ROWS, d_prev))
                    eng_parts.append(np.zeros(PAUSE_ROWS))
                    first = 1
            n = max(int(np.ceil((stop - x0) / inc)), 1)
            z = x0 + inc * np.arange(first, n + 1)
            z[-1] = stop
            z = z[z <= stop]
            if started:
                d_prev = float(ends[k - 1])
                eng = np.clip((z - d_prev) / max(spec.reengage_mm, 1e-6), 0.0, 1.0)
            else:
                eng = np.ones(len(z))
            z_parts.append(z)
            eng_parts.append(eng)
            n_here = sum(len(a) for a in z_parts) - sum(len(a) for a in step_parts)
            step_parts.append(np.full(n_here, st.step, dtype=np.int32))
            fpr_parts.append(np.full(n_here, fpr))
            rpm_parts.append(np.full(n_here, st.rpm))
            rep = np.ones(n_here, dtype=np.int64)
            rep[-1] = DWELL_ROWS
            rep_parts.append(rep)
            final = stop >= limit or k == len(steps) - 1
            code = STOP_ABORTED if spec.aborted and final else (STOP_END if final
                                                                else STOP_STEP_END)
            code_parts.append(np.full(n_here, code, dtype=np.int64))
            started = True
            last_k = k
            if final:
                break
        self.depth = np.concatenate(z_parts)
        self.engaged = np.concatenate(eng_parts)
        self.step = np.concatenate(step_parts)
        self.fpr = np.concatenate(fpr_parts)
        self.rpm = np.concatenate(rpm_parts)
        self.repeat = np.concatenate(rep_parts)
        self.end_code = np.concatenate(code_parts)
        self.ends = ends
        self.last_step = last_k

    def expand(self, values: np.ndarray) -> np.ndarray:
        return np.repeat(values, self.repeat)

    def stop_codes(self) -> np.ndarray:
        """0 while a step runs; its code on the repeated copies of its last sample."""
        codes = np.zeros(int(self.repeat.sum()), dtype=np.int64)
        last = np.cumsum(self.repeat) - 1
        for extra in range(DWELL_ROWS - 1):
            idx = last[self.repeat > 1] - extra
            codes[idx] = self.expand(self.end_code)[idx]
        return codes


def material_torque(spec: StackSpec, depth: np.ndarray, fpr: np.ndarray) -> tuple[
        np.ndarray, np.ndarray]:
    """Noiseless net torque of the stack (no step-change dips, no air offset, gain 1) and the
    matching thrust."""
    point = spec.point_length_mm
    bounds = spec.boundaries_mm
    ends = np.cumsum([s.travel_mm for s in spec.steps])
    wear = 1.0 + spec.wear_per_hole * spec.local_counter
    torque = np.zeros(len(depth))
    thrust = np.zeros(len(depth))
    n_layers = len(spec.layers)
    for i, layer in enumerate(spec.layers):
        top, bottom = bounds[i], bounds[i + 1]
        k = min(int(np.searchsorted(ends, top, side="left")), len(spec.steps) - 1)
        st = spec.steps[k]
        fpr_top = st.feed_mm_rev or (st.feed_mm_s * 60.0 / max(st.rpm, 1.0))
        share = _engaged(depth - top, point)
        u = depth - bottom
        if i == n_layers - 1 and spec.exit_style == "trailing":
            a = spec.tail_share
            # burrs and delamination: a share of the torque fades linearly over the tail
            left = (1.0 - a) * (1.0 - _engaged(u, point)) + a * (
                1.0 - np.clip(u / spec.tail_mm, 0.0, 1.0))
            share = share * np.where(u < 0, 1.0, left)
        elif i == n_layers - 1 and spec.two_stage_exit:
            share = share * _two_stage_left(spec, u)
        else:
            share = share - _engaged(u, point)
        # a cutting level drifts over the first millimetres of a layer, then holds
        creep = 1.0 + spec.creep_per_mm * np.clip(depth - top, 0.0, CREEP_SPAN_MM)
        level = layer.torque_a * wear * creep * (fpr / fpr_top) ** FEED_EXPONENT
        contrib = level * share
        torque += contrib
        thrust += contrib * THRUST_PER_TORQUE.get(layer.material, 0.04)
    if spec.dip_mm is not None and spec.dip_share > 0.0:
        dip = _dip_factor(spec, depth)
        torque *= dip
        thrust *= dip
    bump = _precontact(spec, depth)
    torque += bump
    thrust += bump * THRUST_PER_TORQUE.get(spec.layers[0].material, 0.04)
    if spec.countersink:
        cs_top = bounds[-1] + spec.exit_length_mm + spec.countersink_gap_mm
        cs = spec.countersink_torque_a * _engaged(depth - cs_top, COUNTERSINK_RAMP_MM)
        torque += cs
        thrust += cs * 0.3  # the nose presses: thrust rises more than on cutting
    return torque, thrust


def _two_stage_left(spec: StackSpec, u: np.ndarray) -> np.ndarray:
    """Share of the last level still cutting `u` mm past the bottom of a two-stage exit:
    the point leaves down to a shelf (a cap, a burr still engaged), which then breaks off."""
    s = spec.exit_shelf_share
    first = (1.0 - s) * (1.0 - _engaged(u, spec.point_length_mm))
    second = s * (1.0 - _engaged(u - spec.point_length_mm - spec.exit_shelf_mm,
                                 spec.exit_second_mm))
    return np.where(u < 0, 1.0, first + second)


def _dip_factor(spec: StackSpec, depth: np.ndarray) -> np.ndarray:
    """1 outside the dip; a smooth (raised-cosine) loss of dip_share inside it."""
    x = np.clip((depth - spec.dip_mm) / max(spec.dip_length_mm, 1e-6), 0.0, 1.0)
    return 1.0 - spec.dip_share * 0.5 * (1.0 - np.cos(2.0 * np.pi * x))


def _precontact(spec: StackSpec, depth: np.ndarray) -> np.ndarray:
    """A pre-contact bump: the tip touches first and holds a small torque; the layer's
    own ramp then takes over (the bump fades as the point engages)."""
    at = spec.precontact_start_mm
    if at is None:
        return np.zeros(len(depth))
    rise = _engaged(depth - at, PRECONTACT_RAMP_MM)
    return spec.precontact_a * rise * (1.0 - _engaged(depth - spec.top_mm, spec.point_length_mm))


def quantise(values: np.ndarray, quantum: float) -> np.ndarray:
    """As the controller logs them: a multiple of its quantum, written with 3 decimals."""
    return np.round(np.round(values / quantum) * quantum, 3)
