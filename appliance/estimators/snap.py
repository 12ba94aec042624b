"""Model picks the ramp, the convention places the point.

A learnt estimator is good at telling *which* torque ramp is the entry, the transition or
the exit (the rule-based reading gets that wrong on unusual stacks); the depth on that ramp
is a definition (../shared/docs/depth-points.md: the half-height crossing of the smoothed
torque between the levels either side), which the reading rules compute exactly. `snap`
moves each point an estimator placed onto the half-height crossing of the ramp it sits on,
and leaves it where it is when no ramp of the right direction is within SNAP_MM.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from appliance.estimators.heuristic import (
    Ramp,
    Reading,
    chain_end,
    find_entry,
    read_samples,
    read_trace,
)
from appliance.estimators.reading import (
    GRID_MM,
    LEVEL_WINDOW_MM,
    MIN_LEVEL_MM,
    Profile,
    half_crossing,
    median,
)
from appliance.points import POINT_NAMES
from appliance.trace import Trace

SNAP_MM = 0.5  # farthest a ramp's span may lie from the estimate for the point to move to it
MAX_MOVE_MM = 0.75  # a crossing farther than this from the estimate is another ramp's


def snap(trace: Trace, points: Mapping[str, float | None],
         reading: Reading | None = None) -> dict[str, float | None]:
    """Each present point (keyed by POINT_NAMES) moved onto its ramp's half-height crossing
    where one is near; absent points stay absent and points far from any ramp stay put.
    `reading`: the hole's read_trace, when the caller has it already."""
    if all(points.get(n) is None for n in POINT_NAMES):
        return {n: None for n in POINT_NAMES}  # nothing to move: no reading needed
    return snap_points(reading or read_trace(trace), points)[0]


def snap_points(reading: Reading | None, points: Mapping[str, float | None],
                ) -> tuple[dict[str, float | None], dict[str, bool]]:
    """snap of a hole already read, and per point whether a ramp's crossing was found."""
    out = {n: points.get(n) for n in POINT_NAMES}
    found = dict.fromkeys(POINT_NAMES, False)
    if reading is None or all(v is None for v in out.values()):
        return out, found
    prof, ramps = reading.prof, list(reading.ramps)
    for name, approx in out.items():
        if approx is None:
            continue
        x = _place(prof, ramps, name, float(approx))
        if x is not None and abs(x - approx) <= MAX_MOVE_MM:
            out[name] = round(x, 3)  # as the rules report: 1 µm, far below the noise
            found[name] = True
    return out, found


def ramp_crossings(depth_mm: np.ndarray, torque_a: np.ndarray, step: np.ndarray | None,
                   name: str | None = None) -> list[float]:
    """Every depth a point could be placed at on this trace, sorted: the half-height crossing
    of each ramp of the point's direction (entry: rises, exit: falls, else any), read as
    that point is read. What an operator's "snap to the next crossing" steps through."""
    depth = np.asarray(depth_mm, dtype=float)
    step = np.zeros(len(depth), dtype=np.int64) if step is None else np.asarray(step)
    reading = read_samples(depth, torque_a, step)
    return [] if reading is None else crossings(reading, name)


def crossings(reading: Reading, name: str | None = None) -> list[float]:
    """ramp_crossings of a hole already read."""
    prof, ramps = reading.prof, list(reading.ramps)
    want = _DIRECTION.get(name or "")
    out: set[float] = set()
    for j, r in enumerate(ramps):
        if want is not None and r.sign != want:
            continue
        x = _read_at(prof, ramps, j, name or "transition")
        if x is not None:
            out.add(round(x, 3))  # a run of ramps shares one crossing
    return sorted(out)


def ramp_spans(reading: Reading, name: str | None = None) -> list[tuple[float, float, float]]:
    """(start mm, end mm, level change A) of each ramp of the point's direction: where a
    point could compete for, without reading every crossing."""
    want = _DIRECTION.get(name or "")
    depth = reading.prof.depth
    return [(float(depth[r.start]), float(depth[r.end]), abs(r.amplitude))
            for r in reading.ramps if want is None or r.sign == want]


_DIRECTION = {"entry": 1, "exit": -1}


def _nearest(prof: Profile, ramps: list[Ramp], name: str, approx: float) -> int | None:
    want = _DIRECTION.get(name)
    best, best_d = None, SNAP_MM
    for j, r in enumerate(ramps):
        if want is not None and r.sign != want:
            continue
        lo, hi = float(prof.depth[r.start]), float(prof.depth[r.end])
        d = max(lo - approx, approx - hi, 0.0)
        if d < best_d or (d == best_d == 0.0 and best is not None
                          and r.height > ramps[best].height):
            best, best_d = j, d
    return best


def _place(prof: Profile, ramps: list[Ramp], name: str, approx: float) -> float | None:
    j = _nearest(prof, ramps, name, approx)
    return None if j is None else _read_at(prof, ramps, j, name)


def _read_at(prof: Profile, ramps: list[Ramp], j: int, name: str) -> float | None:
    """The half-height crossing of ramps[j], read as point `name` is read."""
    r = ramps[j]
    last = len(prof.depth) - 1
    # A ramp run on from a same-direction one, with no level between, starts where that
    # one starts: its level before is the one before the whole run.
    k0 = j
    while (k0 > 0 and ramps[k0 - 1].sign == r.sign
           and ramps[k0].win_before < MIN_LEVEL_MM):
        k0 -= 1
    before = ramps[k0].before
    if name == "exit":
        # The level after an exit is read right after the fall the estimate sits on. The
        # checked labels read a steep drop followed by a slow tail (the drill's shoulder
        # leaving) this way; the rule-based estimator joins the two and lands ~0.13 mm
        # deeper on such holes.
        k1 = j
        nxt_rise = next((x.start for x in ramps[j + 1:] if x.sign > 0), last + 1)
        hi = min(nxt_rise, r.end + int(round(LEVEL_WINDOW_MM / GRID_MM)) + 1, last + 1)
        after = (median(prof.torque[r.end:hi]) if hi - r.end >= 2
                 else float(prof.smooth[r.end]))
    else:
        k1 = chain_end(ramps, k0)
        after = ramps[k1].after
        if name == "entry":
            # the rules' own entry reads from the air level, over a pre-contact touch
            cand, air, entry_after = find_entry(ramps, last)
            if cand is not None and air is not None and entry_after is not None:
                c0 = ramps.index(cand)
                c1 = chain_end(ramps, c0)
                if c0 <= j <= c1:  # the model sits on the rules' entry ramp or its run
                    k0, k1, before, after = c0, c1, air, entry_after
    x = half_crossing(prof, ramps[k0].start, ramps[k1].end, before, after)
    if x is None:
        lo_i = ramps[k0 - 1].end if k0 > 0 else 0
        hi_i = ramps[k1 + 1].start if k1 + 1 < len(ramps) else last
        x = half_crossing(prof, lo_i, hi_i, before, after)
    return x
