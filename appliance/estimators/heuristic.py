"""The rule-based estimator: the reading rules of ../shared/docs/depth-points.md, applied
to ramps found in the trace itself.

Torch-free, numpy only; it is the engine's fallback and the reference the models are
compared with.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from appliance.estimators.reading import (
    ENTRY_MIN_RISE_A,
    GAP_MM,
    GRID_MM,
    LEVEL_WINDOW_MM,
    MIN_LEVEL_MM,
    RAMP_SHARE,
    SMOOTH_MM,
    TRANSITION_FACTOR,
    TRANSITION_MIN_A,
    Profile,
    build_profile,
    detection_slope,
    half_crossing,
    level_after,
    level_before,
    median,
    percentile,
    ramp_edges_many,
    run_edge,
)
from appliance.points import POINT_NAMES, DepthEstimate, DepthPoints
from appliance.trace import Trace

NAME = "heuristic"
ABSORB_MM = 0.12  # a much weaker ramp this close before a stronger one is its foot
FOOT_SHARE = 0.25  # "much weaker": its peak slope below this share of the other's
MIN_PEAK_SLOPE = 0.3  # A/mm: flatter than this is never a ramp
MIN_STEP_A = 0.15  # a ramp must change the level at least this much
RELATIVE_STEP = 0.1  # ... and at least this share of the level (metal levels wander)
PROBE_MM = 0.5  # half-width of the quick level-change look around a slope peak
INSIDE_START_A = 0.4  # a trace whose first level is above this starts inside the material
EXIT_FROM_SHARE = 0.5  # of the highest layer level
EXIT_TO_SHARE = 0.4  # of its own starting level
EXIT_AIR_MM = 0.5  # air travel that must follow an exit
EXIT_AIR_WITHIN_MM = 3.5  # a trailing exit reaches air this far after its ramp
EXIT_AIR_TOL_A = 0.3  # "back at the air level": within this of it...
EXIT_AIR_TOL_SHARE = 0.08  # ... or within this share of the fall
EXIT_TAIL_SHARE = 0.15  # a trace may end on an exit's tail once it is this low
PRECONTACT_MM = 1.0  # a small rise this close before a big one is the point touching
PRECONTACT_SHARE = 0.3  # "small": less than this share of the big one's level
PRECONTACT_MAX_A = 0.45  # ... and less than this (a first layer is never that soft)
RETURN_SHARE = 0.3  # a dip (or bump) coming back to within this share is no transition
ARTEFACT_PAD_MM = 0.35  # re-engagement left after the bridged part of a step-change dip
REENGAGE_FACTOR = 1.6  # re-engaging after a speed change ends within this of the level


@dataclass
class Ramp:
    start: int  # grid indices
    end: int
    peak: int
    sign: int  # +1 rise, -1 fall
    height: float = 0.0  # |slope| at the peak, A/mm
    before: float = 0.0
    after: float = 0.0
    win_before: float = 0.0  # mm of level measured beside the ramp
    win_after: float = 0.0

    @property
    def amplitude(self) -> float:
        return self.after - self.before


@dataclass(frozen=True)
class Reading:
    """A hole's torque profile and its ramps: what the rules read points from, and what
    placing a model's points on their ramps reads too (computed once per hole, shared)."""

    prof: Profile
    ramps: tuple[Ramp, ...]
    noise: float
    # the hole's torque in units of the drill's no-load current (torque_per_no_load); None
    # when the log has no no-load current, or the reading was made from bare samples
    per_no_load: float | None = None


# (trace, its reading) by id(trace): the trace is held, so its id cannot be reused meanwhile
_READINGS: OrderedDict[int, tuple[Trace, Reading | None]] = OrderedDict()
_READINGS_LOCK = threading.Lock()
READINGS_KEPT = 64  # one answering batch of the bus: the estimate, then the drift watch


def read_trace(trace: Trace) -> Reading | None:
    """The profile and ramps of a hole; None when too few advancing samples to read.

    The last few dozen are remembered by the identity of the trace object: the engine reads
    a new hole, then the drift watch reads the same object again. Not by content hash: a
    transformed copy (a benchmark's rig, a test's variant) may keep its original's hash."""
    with _READINGS_LOCK:
        held = _READINGS.get(id(trace))
        if held is not None and held[0] is trace:
            _READINGS.move_to_end(id(trace))
            return held[1]
    reading = read_samples(trace.depth_mm, trace.torque_a, trace.step)
    if reading is not None:
        reading = replace(reading, per_no_load=torque_per_no_load(trace))
    remember_reading(trace, reading)
    return reading


def torque_per_no_load(trace: Trace) -> float | None:
    """The 99th percentile of |net torque| over the median no-load current (both are logged
    on the drill's own current scale, so this is free of it); None without a no-load
    current. The convention's thresholds are amperes of the drill that labelled: on a drill
    that logs x2.5, air wobble passes 0.2 A, yet still reaches only a few % of the no-load
    current, where every real cut of ../shared reaches 1.15-29 times it."""
    if trace.torque_empty_a is None or not len(trace):
        return None
    no_load = np.asarray(trace.torque_empty_a, dtype=np.float64)
    no_load = no_load[np.isfinite(no_load) & (no_load > 0)]
    if not len(no_load):
        return None
    torque = np.abs(np.asarray(trace.torque_a, dtype=np.float64))
    return max(percentile(torque, 99), 1e-3) / median(no_load)


def remember_reading(trace: Trace, reading: Reading | None) -> None:
    """read_trace's answer for `trace`, computed elsewhere (an estimate worker process): the
    drift watch then reads the hole from memory rather than again."""
    with _READINGS_LOCK:
        _READINGS[id(trace)] = (trace, reading)
        while len(_READINGS) > READINGS_KEPT:
            _READINGS.popitem(last=False)


def read_samples(depth_mm: np.ndarray, torque_a: np.ndarray, step: np.ndarray,
                 ) -> Reading | None:
    """read_trace of bare sample arrays (e.g. the trace a plot was drawn from)."""
    prof = build_profile(depth_mm, torque_a, step)
    if prof is None or len(prof.depth) < int(SMOOTH_MM / GRID_MM) * 2:
        return None
    noise = _noise(prof)
    return Reading(prof, tuple(find_ramps(prof, noise)), noise)


def estimate_heuristic(trace: Trace, reading: Reading | None = None) -> DepthEstimate:
    """Entry, transition and exit of one hole, each None when the rules find it absent.
    `reading`: the hole's read_trace, when the caller has it already."""
    reading = reading or read_trace(trace)
    if reading is None:
        return _empty("too few advancing samples to read")
    return _read(reading)


class HeuristicEstimator:
    """The Estimator protocol around estimate_heuristic."""

    name = NAME

    def estimate(self, trace: Trace) -> DepthEstimate:
        return estimate_heuristic(trace)

    def estimate_many(self, traces: Sequence[Trace]) -> list[DepthEstimate]:
        return [estimate_heuristic(t) for t in traces]


def _empty(note: str) -> DepthEstimate:
    return DepthEstimate(None, None, None, spread_mm={n: None for n in POINT_NAMES},
                         presence={n: 0.0 for n in POINT_NAMES},
                         confidence={n: None for n in POINT_NAMES}, estimator=NAME,
                         note=note)


# ---------------------------------------------------------------- ramps

def _noise(prof: Profile) -> float:
    """Robust scale of the residual torque noise (A) around its moving mean."""
    resid = np.abs(prof.torque - prof.smooth)
    return 1.4826 * median(resid) + 1e-3


def _min_step(noise: float) -> float:
    return MIN_STEP_A + 1.5 * noise


def find_ramps(prof: Profile, noise: float | None = None) -> list[Ramp]:
    """Ramps around slope peaks, steepest first, each where the slope stays >= RAMP_SHARE
    of its peak (gaps < GAP_MM bridged); step-change artefacts and flat wiggles dropped."""
    noise = _noise(prof) if noise is None else noise
    min_step = _min_step(noise)
    slope = detection_slope(prof)
    n = len(slope)
    mag = np.abs(slope)
    inner = (mag[1:-1] >= mag[:-2]) & (mag[1:-1] > mag[2:]) & (mag[1:-1] >= MIN_PEAK_SLOPE)
    peaks = np.flatnonzero(inner) + 1
    # a quick look at the level change across each peak discards the wander of a
    # cutting level (a few % of it) before the edges and claims below
    w = int(round(PROBE_MM / GRID_MM))
    a = prof.smooth[np.clip(peaks - w, 0, n - 1)]
    b = prof.smooth[np.clip(peaks + w, 0, n - 1)]
    step = (b - a) * np.sign(slope[peaks])
    need = np.maximum(min_step, RELATIVE_STEP * np.maximum(np.abs(a), np.abs(b)))
    peaks = peaks[step >= 0.5 * need]
    peaks = peaks[np.argsort(-mag[peaks], kind="stable")]
    gap = int(round(GAP_MM / GRID_MM))
    starts, ends = ramp_edges_many(slope, peaks, RAMP_SHARE, gap)
    ramps = _claim(peaks, starts, ends, slope)
    ramps.sort(key=lambda r: r.start)
    zones = _artefact_zones(prof)
    ramps = _significant(prof, _merge(_drop_artefacts(prof, ramps, zones, slope)), min_step)
    return _with_levels(prof, _drop_feet(ramps), min_step)


def _claim(peaks: np.ndarray, starts: np.ndarray, ends: np.ndarray,
           slope: np.ndarray) -> list[Ramp]:
    """Ramps from peaks taken steepest first: a peak inside a stronger ramp is part of it,
    and a ramp stops at a stronger one already found. The ramps found so far are disjoint,
    so sorted bounds and a bisection stand in for a claimed mask over the trace (a peak's
    own slope is above its share, so its edges always hold it)."""
    lows: list[int] = []  # starts of the ramps found so far, ascending
    highs: list[int] = []  # their ends, same order
    ramps: list[Ramp] = []
    for pk, start, end in zip(peaks.tolist(), starts.tolist(), ends.tolist(), strict=True):
        k = bisect_right(lows, pk)  # ramps[:k] start at or before the peak
        if k and highs[k - 1] >= pk:
            continue
        if k and highs[k - 1] >= start:
            start = highs[k - 1] + 1
        if k < len(lows) and lows[k] <= end:
            end = lows[k] - 1
        lows.insert(k, start)
        highs.insert(k, end)
        ramps.append(Ramp(start, end, pk, 1 if slope[pk] > 0 else -1, abs(float(slope[pk]))))
    return ramps


def _significant(prof: Profile, ramps: list[Ramp], min_step: float) -> list[Ramp]:
    """Keep ramps whose torque differs enough between PROBE_MM beside either end
    (windows not cut by neighbours, so that a chain of wiggles cannot pass)."""
    if not ramps:
        return ramps
    w = int(round(PROBE_MM / GRID_MM))
    n = len(prof.torque)
    csum = np.concatenate(([0.0], np.cumsum(prof.torque)))
    starts = np.array([r.start for r in ramps])
    ends = np.array([r.end for r in ramps])
    lo_a, lo_b = np.clip(starts - w, 0, n), np.clip(starts + 1, 0, n)
    hi_a, hi_b = np.clip(ends, 0, n), np.clip(ends + w + 1, 0, n)
    # means over the probe windows: a median per ramp would cost more than all the rest
    before = (csum[lo_b] - csum[lo_a]) / np.maximum(lo_b - lo_a, 1)
    after = (csum[hi_b] - csum[hi_a]) / np.maximum(hi_b - hi_a, 1)
    signs = np.array([r.sign for r in ramps])
    need = np.maximum(min_step, RELATIVE_STEP * np.maximum(np.abs(before), np.abs(after)))
    ok = signs * (after - before) >= need
    return [r for r, k in zip(ramps, ok, strict=True) if k]


@dataclass(frozen=True)
class Zone:
    """A step change's dip and re-engagement, in grid indices, and the level before it."""

    start: int
    end: int
    level: float


def _artefact_zones(prof: Profile) -> list[Zone]:
    """The bridged stretch plus what re-engagement is left after it; a short span where
    nothing was bridged (the cut may still split a ramp)."""
    pre = int(round(0.15 / GRID_MM))
    pad = int(round(ARTEFACT_PAD_MM / GRID_MM))
    win = int(round(LEVEL_WINDOW_MM / GRID_MM))
    last = len(prof.depth) - 1
    zones = []
    for kind, d0, d1 in prof.dips:
        if kind == "left":
            continue  # nothing re-engaged: a fall there is the tool leaving, not a dip
        i, j = prof.index(d0), prof.index(d1)
        level = median(prof.torque[max(0, i - win):i + 1])
        zones.append(Zone(max(0, i - pre), min(last, j + pad), level))
    return zones


def _drop_artefacts(prof: Profile, ramps: list[Ramp], zones: list[Zone],
                    slope: np.ndarray) -> list[Ramp]:
    """A ramp that peaks inside a step change's dip is an artefact (the dip, or the
    re-engagement back to about the level before) unless it rises well past that level:
    then a material ramp starts at the step change. A ramp that runs into a dip stops
    where the dip starts, unless it goes on after the dip (a material ramp cut by it)."""
    gap = int(round(GAP_MM / GRID_MM))
    probe = int(round(PROBE_MM / GRID_MM))
    n = len(slope)
    out = []
    for r in ramps:
        inside = [z for z in zones if z.start <= r.peak <= z.end]
        if inside:
            z = inside[0]
            after = float(np.mean(prof.torque[r.end:min(n, r.end + probe + 1)]))
            material = r.sign > 0 and after >= REENGAGE_FACTOR * z.level + TRANSITION_MIN_A
            if not material:
                continue
        for z in zones:
            if r.peak < z.start <= r.end:
                low = r.sign * slope < RAMP_SHARE * r.height
                if z.end + 1 < n and not low[z.end + 1]:
                    r.end = max(r.end, run_edge(low, z.end + 1, gap, +1))
                else:
                    r.end = z.start
        out.append(r)
    return out


def _merge(ramps: list[Ramp]) -> list[Ramp]:
    """Join same-direction ramps that overlap (a ramp continued through a dip)."""
    out: list[Ramp] = []
    for r in ramps:
        if out and out[-1].sign == r.sign and r.start <= out[-1].end:
            prev = out[-1]
            prev.end = max(prev.end, r.end)
            if r.height > prev.height:
                prev.peak, prev.height = r.peak, r.height
            continue
        out.append(r)
    return out


def _drop_feet(ramps: list[Ramp]) -> list[Ramp]:
    """A much weaker ramp running straight into a stronger one of the same direction
    (no level between) is that ramp's foot, or a wiggle of the level before it that
    bleeds into the foot: it is dropped, so the stronger ramp's level is read over it."""
    gap = int(round(ABSORB_MM / GRID_MM))
    out: list[Ramp] = []
    for j, r in enumerate(ramps):
        nxt = ramps[j + 1] if j + 1 < len(ramps) else None
        if (nxt is not None and nxt.sign == r.sign and nxt.start - r.end <= gap
                and r.height < FOOT_SHARE * nxt.height):
            continue
        out.append(r)
    return out


def _with_levels(prof: Profile, ramps: list[Ramp], min_step: float) -> list[Ramp]:
    """Levels beside each ramp; ramps that change the level too little are dropped and the
    levels of their neighbours measured again (a dropped ramp no longer bounds a window)."""
    for _ in range(4):
        last = len(prof.depth) - 1
        for j, r in enumerate(ramps):
            floor = ramps[j - 1].end if j > 0 else 0
            ceil = ramps[j + 1].start if j + 1 < len(ramps) else last
            r.before = level_before(prof, r.start, floor)
            r.after = level_after(prof, r.end, ceil)
            r.win_before = min(r.start - floor, int(LEVEL_WINDOW_MM / GRID_MM)) * GRID_MM
            r.win_after = min(ceil - r.end, int(LEVEL_WINDOW_MM / GRID_MM)) * GRID_MM
        keep = [r for r in ramps if r.sign * r.amplitude >= max(
            min_step, RELATIVE_STEP * max(abs(r.before), abs(r.after)))]
        if len(keep) == len(ramps):
            break
        ramps = keep
    return ramps


# ---------------------------------------------------------------- points

def _read(reading: Reading) -> DepthEstimate:
    prof, noise = reading.prof, reading.noise
    ramps = list(reading.ramps)
    last = len(prof.depth) - 1
    first_ramp = ramps[0].start if ramps else last
    head = prof.torque[: max(2, min(first_ramp, int(LEVEL_WINDOW_MM / GRID_MM)) + 1)]
    start_level = median(head)
    inside = start_level > INSIDE_START_A

    notes: list[str] = []
    entry_r: Ramp | None = None
    air: float | None = None
    entry_after: float | None = None
    if inside:
        notes.append(f"trace starts inside the material ({start_level:.2f} A): no entry")
    else:
        entry_r, air, entry_after = find_entry(ramps, last)
        if entry_r is None and ramps:
            notes.append("no sustained rise from the air level: no entry")
        air = start_level if air is None else air

    exit_r, exit_after = _find_exit(prof, ramps, entry_r, air)
    lo = chain_end(ramps, ramps.index(entry_r)) + 1 if entry_r is not None else 0
    hi = len(ramps) if exit_r is None else next(
        i for i, x in enumerate(ramps) if x.start >= exit_r.start)
    trans_r, trans_after = None, None
    if entry_r is not None or inside:
        trans_r, trans_after = _find_transition(ramps, lo, hi, air)

    pts: dict[str, float | None] = {"entry": None, "transition": None, "exit": None}
    conf: dict[str, float | None] = {"entry": None, "transition": None, "exit": None}
    for name, r, before, after in (("entry", entry_r, air, entry_after),
                                   ("transition", trans_r, None, trans_after),
                                   ("exit", exit_r, None, exit_after)):
        if r is None:
            continue
        level_from = r.before if before is None else before
        level_to = r.after if after is None else after
        x = half_crossing(prof, r.start, r.end, level_from, level_to)
        if x is None:
            # the ramp ran on into the next one, or a step change cut it short: look on
            # to the neighbouring ramps
            k0 = next(i for i, x in enumerate(ramps) if x.start >= r.start)
            k1 = next(i for i, x in enumerate(ramps) if x.end >= r.end)
            if name != "exit":
                k1 = chain_end(ramps, k1)
            lo_i = ramps[k0 - 1].end if k0 > 0 else 0
            hi_i = ramps[k1 + 1].start if k1 + 1 < len(ramps) else last
            x = half_crossing(prof, lo_i, hi_i, level_from, level_to)
        if x is None:
            notes.append(f"{name}: the smoothed torque does not cross half-height on its ramp")
            continue
        pts[name] = round(x, 3)
        conf[name] = _confidence(r, level_from, level_to, noise)
    ordered, order_note = DepthPoints(pts["entry"], pts["transition"], pts["exit"]).in_order()
    if order_note is not None:
        notes.append(order_note)
        for name in POINT_NAMES:
            if ordered.get(name) is None:
                pts[name], conf[name] = None, None
    return DepthEstimate(
        pts["entry"], pts["transition"], pts["exit"],
        spread_mm={n: (0.0 if pts[n] is not None else None) for n in POINT_NAMES},
        presence={n: (1.0 if pts[n] is not None else 0.0) for n in POINT_NAMES},
        confidence=conf,
        estimator=NAME,
        note="; ".join(notes) or None,
    )


def find_entry(ramps: list[Ramp], last: int) -> tuple[Ramp | None, float | None,
                                                   float | None]:
    """The first sustained rise of >= ENTRY_MIN_RISE_A from the air level: the ramp, the
    air level and the level it rises to (None, None, None when there is none).

    A rise that runs on into the next one, with no level between, goes on to that one's
    level. A small rise followed closely by a much bigger one is the point touching first
    (a pre-contact): the entry is the bigger one, still read from the air."""
    rising = [r for r in ramps if r.sign > 0]
    for i, r in enumerate(rising):
        if r.amplitude < ENTRY_MIN_RISE_A:
            continue
        air = r.before
        k = chain_end(ramps, ramps.index(r))
        cand, after = r, ramps[k].after
        for nxt in rising[i + 1:]:
            if nxt.start <= ramps[k].end:
                continue
            close = (nxt.start - ramps[k].end) * GRID_MM <= PRECONTACT_MM
            small = after - air < min(PRECONTACT_MAX_A, PRECONTACT_SHARE * (nxt.after - air))
            if not (close and small):
                break
            k = chain_end(ramps, ramps.index(nxt))
            cand, after = nxt, ramps[k].after
        if ramps[k].win_after < MIN_LEVEL_MM and ramps[k].end >= last - int(
                MIN_LEVEL_MM / GRID_MM):
            return None, air, None  # the trace ends on the entry ramp: nothing to read
        return cand, air, after
    return None, None, None


def chain_end(ramps: list[Ramp], j: int, hi: int | None = None) -> int:
    """Index of the last ramp of the run of same-direction ramps starting at j with no
    real level between them."""
    hi = len(ramps) if hi is None else hi
    k = j
    while (k + 1 < hi and ramps[k + 1].sign == ramps[j].sign
           and ramps[k].win_after < MIN_LEVEL_MM):
        k += 1
    return k


def _find_transition(ramps: list[Ramp], lo: int, hi: int,
                     air: float | None) -> tuple[Ramp | None, float | None]:
    """The first ramp in ramps[lo:hi] between two layer levels that differ by a factor
    >= 2 (and >= 0.4 A), from a real level; returns it and the level it reaches (a ramp
    running on into the next same-direction one, with no level between, reaches that
    one's level). A dip or bump that comes straight back is no change of material, and
    a fall to the air level is the tool leaving, not a layer."""
    floor = max(air if air is not None else 0.0, 0.0) + TRANSITION_MIN_A
    for j in range(lo, hi):
        r = ramps[j]
        prev = ramps[j - 1] if j > 0 else None
        if prev is not None and prev.sign == r.sign and r.win_before < MIN_LEVEL_MM:
            continue  # still creeping on from the previous ramp: no real level
        k = chain_end(ramps, j, hi)
        after = ramps[k].after
        nxt = ramps[k + 1] if k + 1 < len(ramps) else None
        if (nxt is not None and nxt.sign != r.sign and ramps[k].win_after < MIN_LEVEL_MM
                and abs(nxt.after - r.before) <= RETURN_SHARE * max(abs(r.before),
                                                                    abs(nxt.after))):
            continue
        if (prev is not None and prev.sign != r.sign and r.win_before < MIN_LEVEL_MM
                and abs(after - prev.before) <= RETURN_SHARE * max(abs(after),
                                                                   abs(prev.before))):
            continue  # the way back out of such a dip
        a, b = sorted((abs(r.before), abs(after)))
        if min(r.before, after) < floor:
            continue
        if b - a >= TRANSITION_MIN_A and b >= TRANSITION_FACTOR * max(a, 1e-9):
            return r, after
    return None, None


def _find_exit(prof: Profile, ramps: list[Ramp], entry_r: Ramp | None,
               air: float | None) -> tuple[Ramp | None, float | None]:
    """The last fall from >= half the highest layer level to <= 40 % of its start, then
    >= EXIT_AIR_MM back at the air level (or a trace that ends on the fall's tail).
    Returns the ramp and the level after it: the median over LEVEL_WINDOW_MM after the
    ramp, which a tail (a falling ramp after it) does not cut short."""
    first = ramps.index(entry_r) if entry_r is not None else 0
    stack = ramps[first:]
    air_mm = int(round(EXIT_AIR_MM / GRID_MM))
    within = int(round(EXIT_AIR_WITHIN_MM / GRID_MM))
    win = int(round(LEVEL_WINDOW_MM / GRID_MM))
    n = len(prof.depth)
    for k in range(len(stack) - 1, -1, -1):
        r = stack[k]
        if r.sign > 0:
            continue
        highest = max([x.after for x in stack[:k] if x.sign > 0] + [r.before, stack[k].before])
        nxt_rise = next((x.start for x in stack[k + 1:] if x.sign > 0), n)
        hi = min(nxt_rise, r.end + win + 1, n)
        after = median(prof.torque[r.end:hi]) if hi - r.end >= 2 else float(
            prof.smooth[min(r.end, n - 1)])
        # a fall that runs on from a previous fall, with no level between, starts there
        j = k
        while j > 0 and stack[j - 1].sign < 0 and stack[j].win_before < MIN_LEVEL_MM:
            j -= 1
        start_level = stack[j].before
        if start_level < EXIT_FROM_SHARE * highest or after > EXIT_TO_SHARE * start_level:
            continue
        ref_air = air if air is not None else min(0.0, after)
        tol = max(EXIT_AIR_TOL_A, EXIT_AIR_TOL_SHARE * (start_level - ref_air))
        seg_end = min(n, r.end + within + air_mm, nxt_rise + air_mm)
        # a trailing exit may reach air before its (slow) ramp ends: look from the peak
        near = np.abs(prof.smooth[r.peak:seg_end] - ref_air) <= tol
        if _first_run(near, air_mm) is None:
            ends_on_tail = nxt_rise == n and seg_end == n and (
                prof.smooth[-1] - ref_air <= EXIT_TAIL_SHARE * (start_level - ref_air))
            if not ends_on_tail:
                continue
        if j < k:
            return Ramp(stack[j].start, r.end, r.peak, -1, r.height, start_level, after,
                        stack[j].win_before, r.win_after), after
        return r, after
    return None, None


def _first_run(mask: np.ndarray, length: int) -> int | None:
    """Offset of the first run of `length` True values, or None."""
    if len(mask) < length:
        return None
    c = np.concatenate(([0], np.cumsum(mask.astype(np.int64))))
    full = np.flatnonzero(c[length:] - c[:-length] == length)
    return int(full[0]) if len(full) else None


def _confidence(r: Ramp, level_from: float, level_to: float, noise: float) -> float:
    """0..1: a big step over the noise, measured on full level windows, is trusted."""
    snr = abs(level_to - level_from) / max(noise, 1e-3)
    c = min(1.0, snr / 30.0)
    c *= min(1.0, 0.4 + 0.6 * r.win_before / LEVEL_WINDOW_MM)
    c *= min(1.0, 0.4 + 0.6 * r.win_after / LEVEL_WINDOW_MM)
    return round(float(c), 3)
