"""The plateau levels of each program step of a hole: what the currents of a steady cut are.

A level is read off the heuristic's Reading (the convention's profile and the ramps found in
it), so the monitor sees the same steps, dips and air level as the rule-based estimator: a
plateau is a stretch of the step's grid that lies on no ramp and no step-change dip, cuts
(above the air level by the entry's rise), and lasts at least MIN_LEVEL_MM. A step may cut
two layers (the soft one before a slow step's metal, or a whole stack): the step's level is
the highest of its plateaus (median torque, and thrust over the same stretch), which picks
the same layer hole after hole where the longest one flips with the layers' thicknesses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from appliance.estimators.heuristic import ARTEFACT_PAD_MM, Reading, find_entry
from appliance.estimators.reading import (
    ENTRY_MIN_RISE_A,
    GRID_MM,
    LEVEL_WINDOW_MM,
    MIN_LEVEL_MM,
    SMOOTH_MM,
    median,
)
from appliance.trace import Trace, advancing_mask

NAN = float("nan")
# a ramp's edges sit where its slope falls to a fifth of the peak: the torque still moves
# there, so half the smoothing width beside every ramp is not level yet
RAMP_PAD_MM = SMOOTH_MM / 2


@dataclass(frozen=True)
class StepLevel:
    """One program step of one hole. NaN where the step did not cut (air only) or the
    trace does not log the value."""

    step: int
    rpm: float  # programmed speed, or the logged one when there is no program
    torque_a: float  # net torque on the step's highest plateau (median)
    thrust_a: float  # net thrust on the same plateau
    plateau_mm: float  # length of that plateau, 0 when there is none
    torque_empty_a: float  # no-load currents the controller nets out in this step
    thrust_empty_a: float


def air_level(reading: Reading) -> float:
    """The air level the entry rises from (the estimator's), else the head of the trace."""
    last = len(reading.prof.depth) - 1
    _, air, _ = find_entry(list(reading.ramps), last)
    if air is not None:
        return air
    first = reading.ramps[0].start if reading.ramps else last
    head = reading.prof.torque[: max(2, min(first, int(LEVEL_WINDOW_MM / GRID_MM)) + 1)]
    return median(head)


def step_levels(trace: Trace, reading: Reading | None) -> tuple[StepLevel, ...]:
    """Every step that ran, in the order it ran; levels NaN when nothing can be read."""
    steps = steps_run(trace.step)
    rpm = {s.step: s.rpm for s in trace.meta.program}
    empties = {s: (_step_median(trace.torque_empty_a, trace.step, s),
                   _step_median(trace.thrust_empty_a, trace.step, s)) for s in steps}
    found: dict[int, tuple[float, float, float]] = {}
    if reading is not None:
        found = _plateaus(trace, reading)
    out = []
    for s in steps:
        torque, thrust, length = found.get(s, (NAN, NAN, 0.0))
        speed = rpm.get(s, _step_median(trace.rpm, trace.step, s))
        out.append(StepLevel(s, abs(speed), torque, thrust, length, *empties[s]))
    return tuple(out)


def steps_run(step: np.ndarray) -> list[int]:
    """Step numbers in the order they first appear."""
    if len(step) == 0:
        return []
    values, first = np.unique(step, return_index=True)
    return [int(v) for v in values[np.argsort(first)]]


def _step_median(values: np.ndarray | None, step: np.ndarray, s: int) -> float:
    if values is None:
        return NAN
    v = values[step == s]
    v = v[np.isfinite(v)]
    return median(np.asarray(v, dtype=float)) if len(v) else NAN


def _plateaus(trace: Trace, reading: Reading) -> dict[int, tuple[float, float, float]]:
    """Per step: (torque, thrust, plateau length) of its highest plateau, where it has one."""
    prof = reading.prof
    depth = np.asarray(trace.depth_mm, dtype=float)
    torque = np.asarray(trace.torque_a, dtype=float)
    # the same samples build_profile kept, so that the grid's steps and thrust line up
    finite = np.isfinite(depth) & np.isfinite(torque)
    thrust_all = np.asarray(trace.thrust_a, dtype=float)
    finite &= np.isfinite(thrust_all)
    d, st, th = depth[finite], trace.step[finite], thrust_all[finite]
    keep = advancing_mask(d)
    d, st, th = d[keep], st[keep], th[keep]
    if len(d) < 2:
        return {}
    at = np.clip(np.searchsorted(d, prof.depth, side="right") - 1, 0, len(d) - 1)
    grid_step = st[at]
    thrust = np.interp(prof.depth, d, th)

    # the controller nets the no-load current out per step and sometimes gets the first
    # steps wrong (a negative air level): the air after the exit sits near 0, not there
    usable = prof.smooth >= max(air_level(reading), 0.0) + ENTRY_MIN_RISE_A
    pad = int(round(RAMP_PAD_MM / GRID_MM))
    for r in reading.ramps:
        usable[max(0, r.start - pad):r.end + pad + 1] = False
    # a step change's dip and the re-engagement after it (its ramps were dropped as
    # artefacts, so the ramps alone do not mark it)
    reengage = int(round(ARTEFACT_PAD_MM / GRID_MM))
    for _, d0, d1 in prof.dips:
        usable[max(0, prof.index(d0) - pad):prof.index(d1) + reengage + 1] = False

    out: dict[int, tuple[float, float, float]] = {}
    min_len = int(math.ceil(MIN_LEVEL_MM / GRID_MM))
    for s in np.unique(grid_step).tolist():
        best: tuple[float, float, float] | None = None
        for lo, hi in _runs(usable & (grid_step == s)):
            if hi - lo < min_len:
                continue
            level = median(prof.torque[lo:hi])
            if best is None or level > best[0]:
                best = (level, median(thrust[lo:hi]), round((hi - lo) * GRID_MM, 3))
        if best is not None:
            out[int(s)] = best
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[lo, hi) of every run of True, in order."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return list(zip(starts.tolist(), ends.tolist(), strict=True))
