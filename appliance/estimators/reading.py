"""The reading rules of ../shared/docs/depth-points.md as reusable numpy primitives.

The synthetic generator computes its truth with these same primitives (at ramps it knows)
and the rule-based estimator with ramps it detects, so the two can only disagree where
detection does: that is the point of having one place for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from appliance.trace import advancing_mask

GRID_MM = 0.01  # uniform depth grid
SMOOTH_MM = 0.2  # moving-mean width
LEVEL_WINDOW_MM = 1.0  # a level is the median over this much travel beside a ramp
MIN_LEVEL_MM = 0.2  # less than this beside a ramp: the layer peaked, take its extreme
BRIDGE_MAX_MM = 1.2  # a step-change dip is bridged over at most this much travel
BRIDGE_MIN_LEVEL_A = 0.2  # below this the tool was in air: nothing to bridge
RAMP_SHARE = 0.2  # a ramp is where the slope stays >= this share of its peak ...
GAP_MM = 0.1  # ... shorter interruptions bridged
ENTRY_MIN_RISE_A = 0.2  # entry: the first sustained rise of at least this above the air
TRANSITION_FACTOR = 2.0  # transition: levels differing by at least this factor ...
TRANSITION_MIN_A = 0.4  # ... and by at least this much


@dataclass(frozen=True)
class Profile:
    """Net torque on a uniform depth grid: advancing samples only, step-change dips bridged."""

    depth: np.ndarray  # grid depths, GRID_MM apart
    torque: np.ndarray  # linear interpolation of the kept samples (unsmoothed)
    smooth: np.ndarray  # moving mean over SMOOTH_MM
    slope: np.ndarray  # d smooth / d depth, A/mm
    change_depths: np.ndarray  # depths where the program step changed (advancing axis)
    # per step change: (kind, from, to) depths; kind "bridged" (a dip left out from..to),
    # "low" (no level to bridge: the tool was in air or just touching) or "left" (the
    # torque never came back: the tool had left the stack)
    dips: tuple[tuple[str, float, float], ...] = ()

    def index(self, depth_mm: float) -> int:
        """Grid index nearest to a depth, clipped to the grid."""
        i = int(round((depth_mm - float(self.depth[0])) / GRID_MM))
        return min(max(i, 0), len(self.depth) - 1)



def step_change_positions(step: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Positions (in the kept-sample arrays) of the first sample after each step change."""
    raw = np.flatnonzero(step[1:] != step[:-1]) + 1
    if len(raw) == 0:
        return raw
    kept_before = np.cumsum(keep) - keep  # kept samples strictly before each raw index
    pos = kept_before[raw]
    n_kept = int(keep.sum())
    return np.unique(pos[(pos > 0) & (pos < n_kept)])


def dip_mask(depth: np.ndarray, torque: np.ndarray, changes: np.ndarray) -> tuple[
        np.ndarray, tuple[tuple[str, float, float], ...]]:
    """Kept samples to leave out after each step change, until torque is back to half the
    level before the change (at most BRIDGE_MAX_MM of travel), and what each change was
    (see Profile.dips). A tool that never comes back to half leaves no dip to bridge."""
    out = np.zeros(len(depth), dtype=bool)
    kinds = []
    for c in changes:
        d0 = depth[c - 1]
        lo = int(np.searchsorted(depth, d0 - LEVEL_WINDOW_MM, side="left"))
        level = median(torque[lo:c])
        if level < BRIDGE_MIN_LEVEL_A:
            kinds.append(("low", float(depth[c]), float(depth[c])))
            continue
        hi = int(np.searchsorted(depth, d0 + BRIDGE_MAX_MM, side="right"))
        back = np.flatnonzero(torque[c:hi] >= 0.5 * level)
        if len(back) == 0:
            kinds.append(("left", float(depth[c]), float(depth[c])))
            continue
        end = c + int(back[0])
        out[c:end] = True
        kinds.append(("bridged", float(depth[c]), float(depth[min(end, len(depth) - 1)])))
    return out, tuple(kinds)


def moving_mean(values: np.ndarray, width: int) -> np.ndarray:
    """Centred moving mean over `width` points; the window shrinks at the ends."""
    n = len(values)
    if n == 0:
        return values.astype(float)
    half = width // 2
    csum = np.concatenate(([0.0], np.cumsum(values, dtype=float)))
    idx = np.arange(n)
    # np.minimum / np.maximum: np.clip's overhead was most of this on a trace
    lo = np.maximum(idx - half, 0)
    hi = np.minimum(idx + half + 1, n)
    mean: np.ndarray = (csum[hi] - csum[lo]) / (hi - lo)
    return mean


def gradient(values: np.ndarray, step: float) -> np.ndarray:
    """np.gradient(values, step) of a 1-D array of >= 2 points, bit for bit (central
    differences inside, one-sided at the ends), without its generic-axis overhead."""
    out = np.empty(len(values))
    out[1:-1] = (values[2:] - values[:-2]) / (2.0 * step)
    out[0] = (values[1] - values[0]) / step
    out[-1] = (values[-1] - values[-2]) / step
    return out


def build_profile(depth: np.ndarray, torque: np.ndarray, step: np.ndarray) -> Profile | None:
    """Apply the convention's preparation: advancing samples, bridged dips, grid, smoothing.

    None when fewer than two advancing samples remain (nothing to read).
    """
    depth = np.asarray(depth, dtype=float)
    torque = np.asarray(torque, dtype=float)
    step = np.asarray(step)
    finite = np.isfinite(depth) & np.isfinite(torque)
    if not finite.all():
        depth, torque, step = depth[finite], torque[finite], step[finite]
    keep = advancing_mask(depth)
    d, t = depth[keep], torque[keep]
    if len(d) < 2:
        return None
    changes = step_change_positions(step, keep)
    dips, kinds = dip_mask(d, t, changes)
    change_depths = d[changes] if len(changes) else np.zeros(0)
    d_use, t_use = d[~dips], t[~dips]
    if len(d_use) < 2:
        d_use, t_use = d, t
    n = int(np.floor((d[-1] - d[0]) / GRID_MM)) + 1
    grid = d[0] + GRID_MM * np.arange(max(n, 2))
    tg = np.interp(grid, d_use, t_use)
    smooth = moving_mean(tg, int(round(SMOOTH_MM / GRID_MM)) + 1)
    slope = gradient(smooth, GRID_MM)
    return Profile(grid, tg, smooth, slope, change_depths, kinds)


def detection_slope(p: Profile) -> np.ndarray:
    """The slope, averaged once more over SMOOTH_MM: the one ramps are found on."""
    return moving_mean(p.slope, int(round(SMOOTH_MM / GRID_MM)) + 1)


def ramp_edges(slope: np.ndarray, peak: int, share: float, gap: int) -> tuple[int, int]:
    """The stretch around `peak` where the slope (same sign) stays >= share of its value
    there; runs below it shorter than `gap` points are bridged."""
    starts, ends = ramp_edges_many(slope, np.array([peak]), share, gap)
    return int(starts[0]), int(ends[0])


EDGE_SCAN = 256  # points first looked at beside every peak, four times more while needed


def ramp_edges_many(slope: np.ndarray, peaks: np.ndarray, share: float, gap: int,
                    ) -> tuple[np.ndarray, np.ndarray]:
    """ramp_edges of many peaks at once, each with its own threshold; the same edges as
    run_edge on each peak's `low` mask (a test holds the two together).

    The slope stays below a threshold for the `gap` points from i exactly when its max
    over them does, so one moving max per sign answers every peak whatever its threshold.
    The max runs over -inf beyond the ends, where a run counts at any length."""
    peaks = np.asarray(peaks, dtype=np.intp)
    width = max(gap, 1)  # a gap of 0 or 1 both stop at the first point below
    size = len(slope) + width + 1
    rising = _moving_max(slope, width)
    falling = _moving_max(-slope, width)  # negating is exact, and so is the max
    # four stretches, each -inf at both ends, so that every look runs forwards: after a
    # rising peak, before it (reversed), after a falling peak, before it (reversed)
    quiet = np.concatenate((rising, rising[::-1], falling, falling[::-1]))
    base = np.where(slope[peaks] >= 0, 0, 2 * size)
    # the run of `width` from i on is rising[i + width]: the ramp ends at i - 1;
    # the run up to i is rising[i + 1], reversed at size - 2 - i: it starts at i + 1
    looks = np.concatenate((base + peaks + width, base + size + size - 2 - peaks))
    thr = share * np.abs(slope[peaks])
    steps = _steps_to_quiet(quiet, looks, np.concatenate((thr, thr)))
    return peaks + 1 - steps[len(peaks):], peaks - 1 + steps[:len(peaks)]


def _moving_max(values: np.ndarray, width: int) -> np.ndarray:
    """out[k] = max of values[k - width : k] with -inf outside values (len n + width + 1):
    the run of `width` points ending at i is out[i + 1], the one starting at i
    out[i + width]; out[0] and out[n + width] see only -inf."""
    n = len(values)
    padded = np.full(n + 2 * width, -np.inf)
    padded[width:width + n] = values
    # maxima over spans doubling up to the width, then two overlapping spans cover it
    span, spans = 1, padded
    while 2 * span <= width:
        spans = np.maximum(spans[:-span], spans[span:])
        span *= 2
    size = n + width + 1
    peaks: np.ndarray = np.maximum(spans[:size], spans[width - span:width - span + size])
    return peaks


def _steps_to_quiet(quiet: np.ndarray, looks: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """Per look, how many steps forward from quiet[look] to the first value below its
    threshold (quiet's -inf stretch ends stop every look). Looks in growing windows, all
    at once: ramps are short next to a trace."""
    steps = np.zeros(len(looks), dtype=np.intp)
    todo = np.arange(len(looks))
    scan = EDGE_SCAN
    while len(todo):
        padded = np.concatenate((quiet, np.full(scan, -np.inf)))
        hit = sliding_window_view(padded, scan)[looks[todo]] < thr[todo, None]
        found = hit.any(axis=1)
        steps[todo[found]] = hit[found].argmax(axis=1)
        todo = todo[~found]
        scan *= 4
    return steps


def run_edge(low: np.ndarray, pk: int, gap: int, direction: int) -> int:
    """Last index from pk in `direction` before a run of >= gap True values of `low`
    (or the array's end). Looks in growing windows: ramps are short next to a trace."""
    n = len(low)
    width = 256
    while True:
        if direction > 0:
            seg = low[pk:pk + width]
            at_end = pk + width >= n
        else:
            seg = low[max(0, pk - width + 1):pk + 1][::-1]
            at_end = pk - width + 1 <= 0
        found = _first_long_run(seg, gap, at_end)
        if found is not None:
            edge = found - 1
            return pk + edge if direction > 0 else pk - edge
        if at_end:
            return n - 1 if direction > 0 else 0
        width *= 4


def _first_long_run(seg: np.ndarray, gap: int, at_end: bool) -> int | None:
    """Start of the first run of >= gap True values in seg (a run reaching the end of the
    array counts whatever its length), or None."""
    idx = np.flatnonzero(seg)
    if len(idx) == 0:
        return None
    if gap <= 1:
        return int(idx[0])
    breaks = np.flatnonzero(np.diff(idx) != 1)
    run_starts = np.concatenate(([0], breaks + 1))
    run_ends = np.concatenate((breaks, [len(idx) - 1]))
    lengths = run_ends - run_starts + 1
    ok = lengths >= gap
    if at_end:
        ok |= idx[run_ends] == len(seg) - 1
    hits = np.flatnonzero(ok)
    return int(idx[run_starts[hits[0]]]) if len(hits) else None


def level_before(p: Profile, start: int, floor: int) -> float:
    """Median torque over LEVEL_WINDOW_MM before grid index `start`, not before `floor`;
    the extreme of the smoothed torque when less than MIN_LEVEL_MM of level is there."""
    lo = max(floor, start - int(round(LEVEL_WINDOW_MM / GRID_MM)))
    if (start - lo) * GRID_MM < MIN_LEVEL_MM:
        seg = p.smooth[max(floor, 0):start + 1]
        return float(_extreme(seg, p.smooth[start]))
    return median(p.torque[lo:start + 1])


def level_after(p: Profile, end: int, ceil: int) -> float:
    """Median torque over LEVEL_WINDOW_MM after grid index `end`, not beyond `ceil`."""
    ceil = min(ceil, len(p.depth) - 1)
    hi = min(ceil, end + int(round(LEVEL_WINDOW_MM / GRID_MM)))
    if (hi - end) * GRID_MM < MIN_LEVEL_MM:
        seg = p.smooth[end:ceil + 1]
        return float(_extreme(seg, p.smooth[end]))
    return median(p.torque[end:hi + 1])


def median(values: np.ndarray) -> float:
    """float(np.median(values)) of a 1-D float array without NaNs, bit for bit (the same
    partition, the same mean of the middle two), without np.median's overhead, which
    was most of the cost of a level on a window of a hundred points."""
    n = len(values)
    if n == 0:
        return float("nan")
    h = n // 2
    if n % 2:
        return float(np.partition(values, h)[h])
    part = np.partition(values, (h - 1, h))
    return float((part[h - 1] + part[h]) / 2)


def percentile(values: np.ndarray, q: float) -> float:
    """float(np.percentile(values, q)) of a non-empty 1-D float array without NaNs, bit for
    bit (numpy's linear method: the same index, the same interpolation either side of the
    half), at a tenth of np.percentile's cost (~70 us a call on a hole's samples)."""
    n = len(values)
    at = (q / 100) * (n - 1)
    lo = int(np.floor(at))
    hi = min(lo + 1, n - 1)
    part = np.partition(values, (lo, hi))
    a, b = part[lo], part[hi]
    gamma = at - lo
    diff = b - a
    return float(b - diff * (1 - gamma)) if gamma >= 0.5 else float(a + diff * gamma)


def _extreme(seg: np.ndarray, ref: float) -> float:
    """The peak (or trough) of a thin layer: the value furthest from where the ramp is."""
    if len(seg) == 0:
        return ref
    hi, lo = float(seg.max()), float(seg.min())
    return hi if abs(hi - ref) <= abs(lo - ref) else lo


def half_crossing(p: Profile, start: int, end: int, before: float, after: float) -> float | None:
    """Depth where the smoothed torque first crosses half-way between two levels in
    [start, end] (grid indices), interpolated between grid points."""
    half = 0.5 * (before + after)
    seg = p.smooth[start:end + 1]
    if len(seg) < 2:
        return None
    above = seg >= half if after > before else seg <= half
    hits = np.flatnonzero(above[1:] & ~above[:-1])
    if above[0]:
        return float(p.depth[start])
    if len(hits) == 0:
        return None
    k = int(hits[0])
    v0, v1 = float(seg[k]), float(seg[k + 1])
    frac = 0.0 if v1 == v0 else (half - v0) / (v1 - v0)
    return float(p.depth[start + k] + frac * GRID_MM)
