"""Sequential change detection per drill: has what its holes show moved away from how the
drill's first holes looked?

Each drill learns a reference from its first `learn_holes` holes (state "learning"), then
every hole updates two-sided CUSUMs of a few channels:

- torque, thrust: the plateau level of every program step, in log space so that a current
  scale (a recalibrated sensor, another drill model) shifts every level by the same amount;
- no_load: the no-load currents the controller nets out, per step, also in log space;
- thickness: how often the estimate's stack, first or last layer thickness is off the
  program's usual one (an estimator that misreads a job now and then shows as a rate);
- presence: how often the estimate's presence pattern is not the program's usual one;
- review: the review priority of the estimate (its largest spread when it has none);
- residual_entry / _transition / _exit, residual_presence: label - estimate, once operators
  confirm holes (observe_residuals, or HoleSignals.residuals).

Holes of one program cut one job, so every reference is kept per program (and step): the
normal variety of stacks and programs one drill sees does not count as drift. A value is
standardised against its key's median and robust spread (at least the channel's pooled
spread and a floor, so that a key learnt from ten values or a near-constant one does not
alarm on chance or a quantum), clipped (one odd hole moves a CUSUM by at most
`clip - slack`), and the keys of a channel are averaged per hole. A channel whose CUSUM
crosses `threshold` raises the drill's alarm, which holds until reset(drill): the reference
then restarts from there. Everything is deterministic: the same stream of observe / reset
calls gives the same states, so the daemon can persist per-hole signals and replay them at
start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from appliance.errors import NotFoundError
from appliance.monitor.reference import Channel, Item, Limits
from appliance.monitor.signals import HoleSignals, Residuals
from appliance.records import DriftSignal, DriftState, DrillDrift

HOLE_CHANNELS: tuple[str, ...] = ("torque", "thrust", "no_load", "thickness", "presence",
                                  "review")
RESIDUAL_CHANNELS: tuple[str, ...] = ("residual_entry", "residual_transition", "residual_exit",
                                      "residual_presence")
CHANNELS: tuple[str, ...] = HOLE_CHANNELS + RESIDUAL_CHANNELS
LOGIT_EPS = 0.01  # a review priority of 0 or 1 stays finite in logit space
SPREAD_EPS_MM = 0.05  # spreads below this are all "the members agree"


@dataclass(frozen=True)
class DriftConfig:
    """Thresholds and slack of the CUSUMs (in reference-sd units per hole), and how the
    reference is learnt."""

    threshold: float = 10.0  # h: a channel alarms once its statistic exceeds this
    slack: float = 1.0  # k: drift below this many sds per hole never accumulates
    learn_holes: int = 30  # holes after a start or reset that only build the reference
    min_reference: int = 10  # values a key needs before it is tested
    clip: float = 4.0  # a standardised value counts at most this much
    min_level_a: float = 0.1  # a current level below this is too few quanta for log space
    level_floor: float = 0.05  # log units: levels within ~5 % are the same level
    thickness_tolerance_mm: float = 0.5  # a thickness this far off the usual one is off
    review_floor: float = 0.25  # logit units of the review priority (log units of spread)
    residual_floor_mm: float = 0.1
    rate_floor: float = 0.3  # sd floor of a rate: ~4 misses in a row alarm, not one
    channels: tuple[str, ...] = field(default=CHANNELS)

    def __post_init__(self) -> None:
        unknown = [c for c in self.channels if c not in CHANNELS]
        if unknown:
            raise ValueError(f"unknown drift channels {unknown}; known: {list(CHANNELS)}")
        if self.learn_holes < 1 or self.min_reference < 1:
            raise ValueError("learn_holes and min_reference must be at least 1")


class _Drill:
    __slots__ = ("holes", "since_reset", "alarm_at_hole", "since", "channels")

    def __init__(self, config: DriftConfig) -> None:
        self.holes = 0
        self.since_reset = 0
        self.alarm_at_hole: int | None = None
        self.since: str | None = None
        self.channels = _new_channels(config)


def _new_channels(config: DriftConfig) -> dict[str, Channel]:
    level = ("numeric", config.level_floor, 0.0)
    residual = ("numeric", config.residual_floor_mm, 0.0)
    kinds = {
        "torque": level, "thrust": level, "no_load": level,
        "thickness": ("tolerance", config.rate_floor, config.thickness_tolerance_mm),
        "presence": ("rate", config.rate_floor, 0.0),
        "review": ("numeric", config.review_floor, 0.0),
        "residual_entry": residual, "residual_transition": residual,
        "residual_exit": residual,
        "residual_presence": ("rate", config.rate_floor, 0.0),
    }
    return {name: Channel(*kinds[name]) for name in CHANNELS if name in config.channels}


class DriftMonitor:
    """Per-drill drift detection over a stream of holes; not thread-safe (one owner)."""

    def __init__(self, config: DriftConfig | None = None) -> None:
        self.config = config or DriftConfig()
        c = self.config
        self._limits = Limits(c.slack, c.clip, c.min_reference)
        self._drills: dict[str, _Drill] = {}

    def observe(self, drill: str, signals: HoleSignals, at: datetime) -> DrillDrift:
        """One more hole of `drill` (its residuals too, when it was confirmed already)."""
        d = self._drills.get(drill)
        if d is None:
            d = self._drills[drill] = _Drill(self.config)
        d.holes += 1
        d.since_reset += 1
        learning = d.since_reset <= self.config.learn_holes
        self._feed(d, _hole_items(signals, self.config), learning, at)
        if signals.residuals is not None:
            self._feed(d, _residual_items(signals.residuals), learning, at)
        if d.since_reset == self.config.learn_holes:
            for ch in d.channels.values():
                ch.end_learning(self.config.min_reference)
        return self._record(drill, d)

    def observe_residuals(self, drill: str, residuals: Residuals, at: datetime) -> DrillDrift:
        """An operator confirmed one of the drill's holes: what the label says of its
        estimate. Counts no hole; learns like the hole's own signals do."""
        d = self._drills.get(drill)
        if d is None:
            raise NotFoundError(f"drill {drill!r} has no holes yet")
        learning = d.since_reset < self.config.learn_holes
        self._feed(d, _residual_items(residuals), learning, at)
        return self._record(drill, d)

    def reset(self, drill: str, at: datetime) -> DrillDrift:
        """An operator acknowledged the drill's state: the reference restarts from the next
        hole (learning again); the hole count goes on. `at` (when) is the caller's to audit:
        the state keeps no time but an alarm's."""
        d = self._drills.get(drill)
        if d is None:
            raise NotFoundError(f"drill {drill!r} has no holes yet")
        d.since_reset = 0
        d.alarm_at_hole, d.since = None, None
        d.channels = _new_channels(self.config)
        return self._record(drill, d)

    def drill(self, drill: str) -> DrillDrift | None:
        d = self._drills.get(drill)
        return None if d is None else self._record(drill, d)

    def drills(self) -> list[DrillDrift]:
        return [self._record(name, self._drills[name]) for name in sorted(self._drills)]

    def _feed(self, d: _Drill, items: dict[str, list[Item]],
              learning: bool, at: datetime) -> None:
        cfg = self.config
        for name, values in items.items():
            ch = d.channels.get(name)
            if ch is None or not values:
                continue
            stat = ch.observe(values, learning, self._limits)
            if stat is not None and stat > cfg.threshold and not ch.alarm:
                ch.alarm = True
                if d.alarm_at_hole is None:
                    d.alarm_at_hole, d.since = d.holes, at.isoformat()

    def _record(self, name: str, d: _Drill) -> DrillDrift:
        cfg = self.config
        signals = tuple(
            DriftSignal(ch_name, _finite(ch.cusum.statistic), cfg.threshold,
                        "alarm" if ch.alarm else ("ok" if ch.armed else "learning"))
            for ch_name, ch in d.channels.items())
        if d.since_reset < cfg.learn_holes:
            state: DriftState = "learning"
        else:
            state = "alarm" if d.alarm_at_hole is not None else "ok"
        return DrillDrift(name, state, d.holes, d.alarm_at_hole, d.since, signals)


def _finite(statistic: float) -> float | None:
    """A statistic as the record holds it: None, not NaN, before it has a reading."""
    return statistic if math.isfinite(statistic) else None


def _hole_items(s: HoleSignals, cfg: DriftConfig) -> dict[str, list[Item]]:
    """The keyed values of each hole channel; NaN and unreadable values are left out."""
    p = s.program
    lo = cfg.min_level_a
    torque: list[Item] = [((p, st.step), math.log(st.torque_a))
                          for st in s.steps if st.torque_a >= lo]
    thrust: list[Item] = [((p, st.step), math.log(st.thrust_a))
                          for st in s.steps if st.thrust_a >= lo]
    no_load: list[Item] = []
    for st in s.steps:
        for which, v in (("torque", st.torque_empty_a), ("thrust", st.thrust_empty_a)):
            if v >= lo:
                no_load.append(((p, st.step, which), math.log(v)))
    layers = (s.stack_mm, s.first_layer_mm, s.last_layer_mm)
    thickness: list[Item] = [(p, layers)] if any(math.isfinite(v) for v in layers) else []
    review: list[Item]
    if math.isfinite(s.review_priority):
        q = min(max(s.review_priority, 0.0), 1.0)
        review = [((p, "priority"), math.log((q + LOGIT_EPS) / (1.0 - q + LOGIT_EPS)))]
    elif math.isfinite(s.spread_mm):
        review = [((p, "spread"), math.log(max(s.spread_mm, 0.0) + SPREAD_EPS_MM))]
    else:
        review = []
    return {"torque": torque, "thrust": thrust, "no_load": no_load, "thickness": thickness,
            "presence": [(p, s.pattern)], "review": review}


def _residual_items(r: Residuals) -> dict[str, list[Item]]:
    out: dict[str, list[Item]] = {}
    for point in ("entry", "transition", "exit"):
        v = r.get(point)
        out[f"residual_{point}"] = [(point, v)] if math.isfinite(v) else []
    out["residual_presence"] = [("presence", r.presence_errors > 0)]
    return out
