"""Exact truth of a synthetic hole: the convention's half-height crossings, read off the
NOISELESS torque at the ramps the generator placed (so no detection is involved)."""

from __future__ import annotations

import numpy as np

from appliance.estimators.reading import (
    ENTRY_MIN_RISE_A,
    GAP_MM,
    GRID_MM,
    RAMP_SHARE,
    SMOOTH_MM,
    TRANSITION_FACTOR,
    TRANSITION_MIN_A,
    Profile,
    build_profile,
    half_crossing,
    level_after,
    level_before,
    moving_mean,
    ramp_edges,
)
from appliance.points import DepthPoints
from appliance.synth.spec import StackSpec


def ramp_extents(spec: StackSpec) -> list[tuple[str, float, float]]:
    """(kind, start, end) depth of every ramp the stack makes: entry, each layer change,
    exit; the moving mean widens each by half its width."""
    pad = SMOOTH_MM / 2.0
    point = spec.point_length_mm
    bounds = spec.boundaries_mm
    out: list[tuple[str, float, float]] = []
    if not spec.starts_inside:
        out.append(("entry", bounds[0] - pad, bounds[0] + point + pad))
    for b in bounds[1:-1]:
        out.append(("change", b - pad, b + point + pad))
    if not spec.aborted:
        out.append(("exit", bounds[-1] - pad, bounds[-1] + spec.exit_length_mm + pad))
    return out


def truth_points(spec: StackSpec, depth: np.ndarray, noiseless: np.ndarray,
                 step: np.ndarray) -> DepthPoints:
    prof = build_profile(depth, noiseless, step)
    if prof is None:
        return DepthPoints(None, None, None)
    lo_d, hi_d = float(prof.depth[0]), float(prof.depth[-1])
    ramps = [(k, a, b) for k, a, b in ramp_extents(spec) if a >= lo_d and b <= hi_d]
    cs_limit = len(prof.depth) - 1
    if spec.countersink:
        cs_top = spec.boundaries_mm[-1] + spec.exit_length_mm + spec.countersink_gap_mm
        cs_limit = prof.index(cs_top)
    entry = transition = exit_ = None
    idx = [(k, prof.index(a), prof.index(b)) if k != "exit" else
           ("exit", prof.index(a), _exit_end(spec, prof, a, b)) for k, a, b in ramps]
    for j, (kind, i0, i1) in enumerate(idx):
        floor = idx[j - 1][2] if j > 0 else 0
        ceil = idx[j + 1][1] if j + 1 < len(idx) else cs_limit
        before = (_air_level(spec, prof, i0) if kind == "entry"
                  else level_before(prof, i0, floor))
        after = level_after(prof, i1, ceil)
        if kind == "entry" and after - before >= ENTRY_MIN_RISE_A:
            entry = half_crossing(prof, i0, i1, before, after)
        elif kind == "change" and transition is None and _is_transition(before, after):
            transition = half_crossing(prof, i0, i1, before, after)
        elif kind == "exit":
            exit_ = half_crossing(prof, i0, i1, before, after)
    return DepthPoints(_r(entry), _r(transition), _r(exit_))


def _air_level(spec: StackSpec, prof: Profile, i0: int) -> float:
    """The air level the entry rises from: read before a pre-contact bump (the point only
    touching is not the stack), and after a step change that changed the no-load offset
    (the air just before the entry is the hole's air level)."""
    start = i0
    if spec.precontact_start_mm is not None:
        start = min(i0, prof.index(spec.precontact_start_mm - SMOOTH_MM / 2.0))
    floor = 0
    if spec.offset_step_mm is not None and spec.offset_step_mm < prof.depth[start]:
        floor = prof.index(spec.offset_step_mm)
    return level_before(prof, start, floor)


def _exit_end(spec: StackSpec, prof: Profile, a: float, b: float) -> int:
    """Where the exit ramp ends as the convention reads it (slope back under 20 % of its
    peak): a trailing exit's slow tail is then level after the ramp, as on real logs
    (the labels read the level over the tail). Never before the point has left. A
    two-stage exit's ramp is its whole fall: the shelf is no level of the stack."""
    i0, i1 = prof.index(a), prof.index(b)
    if spec.two_stage_exit:
        return i1  # its ramp is the whole fall, both stages and the shelf between
    slope = moving_mean(prof.slope[i0:i1 + 1], int(round(SMOOTH_MM / GRID_MM)) + 1)
    if len(slope) == 0 or float((-slope).max()) <= 0.0:
        return i1
    peak = int(np.argmax(-slope))
    _lo, hi = ramp_edges(slope, peak, RAMP_SHARE, int(round(GAP_MM / GRID_MM)))
    return i0 + int(max(hi, peak))


def _is_transition(before: float, after: float) -> bool:
    lo, hi = sorted((abs(before), abs(after)))
    return hi - lo >= TRANSITION_MIN_A and hi >= TRANSITION_FACTOR * max(lo, 1e-9)


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 4)

