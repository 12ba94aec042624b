"""New rigs made from the real labelled logs (for benchmarks/adapt.py and queue.py).

A rig differs from the logs in ../shared in how its drill logs currents (another drill
model: every current x G) or in where its operators confirm the points (a constant offset
per point, or a practice that depends on the signal). Each rig is a function from a real
labelled hole to that rig's hole; the trace changes only with the drill, the label only
with the practice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from appliance.estimators.heuristic import read_trace
from appliance.home import repo_root
from appliance.points import DepthPoints
from appliance.train.augment import scale_currents
from appliance.train.data import TrainHole, real_labelled

Rig = Callable[[TrainHole], TrainHole]
PRACTICE_REACH_MM = 3.0  # a practice point farther than this from the crossing: keep the label


def shared_holes() -> list[TrainHole]:
    labels = repo_root().parent / "shared" / "data" / "setitec" / "labels.csv"
    if not labels.is_file():
        raise SystemExit(f"{labels} is missing: these benchmarks need ../shared")
    holes, problems = real_labelled(labels, labels.parent / "MANIFEST.csv")
    if problems:
        print(f"{len(problems)} logs failed to parse: {problems[:3]}")
    return holes


def gain(g: float) -> Rig:
    """Another drill model: every current x g; the operators' labels are the same holes'."""
    def rig(h: TrainHole) -> TrainHole:
        return replace(h, trace=scale_currents(h.trace, g))
    return rig


def offsets(entry: float, transition: float, exit_: float) -> Rig:
    """Operators who confirm each point a constant distance from the convention."""
    def rig(h: TrainHole) -> TrainHole:
        lab = h.label
        moved = [None if v is None else v + d for v, d in
                 ((lab.entry_mm, entry), (lab.transition_mm, transition), (lab.exit_mm, exit_))]
        return replace(h, label=DepthPoints(*moved))
    return rig


def signal_practice(entry_share: float = 0.1, exit_share: float = 0.9) -> Rig:
    """Operators who put the entry where the torque first leaves its air level (entry_share
    of the way up the entry ramp) and the exit where the torque fall ends (exit_share of the
    way down), instead of at half-height; the transition stays on the convention."""
    def rig(h: TrainHole) -> TrainHole:
        reading = read_trace(h.trace)
        lab = h.label
        if reading is None:
            return h
        entry = _share_point(reading, lab.entry_mm, +1, entry_share)
        exit_ = _share_point(reading, lab.exit_mm, -1, exit_share)
        return replace(h, label=DepthPoints(entry, lab.transition_mm, exit_))
    return rig


def _share_point(reading, at_mm: float | None, sign: int, share: float) -> float | None:
    """Where the smoothed torque of the ramp through at_mm is `share` of the way from its
    level before to its level after, searched from at_mm towards the ramp's foot (a rise:
    backwards) or its end (a fall: forwards)."""
    if at_mm is None:
        return None
    prof = reading.prof
    ramps = [r for r in reading.ramps if r.sign == sign]
    if not ramps:
        return at_mm
    i = prof.index(at_mm)
    ramp = min(ramps, key=lambda r: 0 if r.start <= i <= r.end else min(abs(r.start - i),
                                                                          abs(r.end - i)))
    before, after = ramp.before, ramp.after
    target = before + share * (after - before)
    reach = int(round(PRACTICE_REACH_MM / float(prof.depth[1] - prof.depth[0])))
    if sign > 0:  # backwards until the torque is below the target
        seg = prof.smooth[max(0, i - reach):i + 1][::-1]
        hit = np.flatnonzero(seg <= target)
        return at_mm if len(hit) == 0 else round(float(prof.depth[i - int(hit[0])]), 4)
    seg = prof.smooth[i:i + reach + 1]
    hit = np.flatnonzero(seg <= target)
    return at_mm if len(hit) == 0 else round(float(prof.depth[i + int(hit[0])]), 4)


RIGS: dict[str, Rig] = {
    "currents x0.4": gain(0.4),
    "offsets -0.3/+0.25/+0.4 mm": offsets(-0.3, 0.25, 0.4),
    "entry 10 %, exit 90 % of the ramp": signal_practice(),
}
