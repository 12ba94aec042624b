"""The daemon's drift watch: every new hole and every operator confirmation, per drill.

The monitor (appliance.monitor) keeps no state on disk; this service logs what it observed
(drift_events) and replays the log at start, so a restart neither forgets a drill's
reference nor clears an alarm nobody acknowledged. Resets are audited.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from appliance.errors import NotFoundError
from appliance.estimators.heuristic import Reading
from appliance.monitor import (
    UNKNOWN_DRILL,
    DriftMonitor,
    DrillDrift,
    hole_signals,
    residual_signals,
)
from appliance.monitor.accuracy import ConfirmedHole, live_accuracy
from appliance.monitor.signals import (
    residuals_from_json,
    residuals_to_json,
    signals_from_json,
    signals_to_json,
)
from appliance.points import DepthEstimate, DepthPoints
from appliance.records import LiveAccuracy
from appliance.store import Store
from appliance.store.drift import DriftEvent
from appliance.store.labels import points_of
from appliance.trace import Trace

log = logging.getLogger("appliance.drift")


@dataclass(frozen=True)
class NewHole:
    hole_id: str
    trace: Trace
    estimate: DepthEstimate
    # the rules' reading the estimate used, taken while it is still remembered: the watch
    # runs once a whole group is answered, by when a busy bus has answered more holes than
    # read_trace keeps (reading a hole again cost the bus ~1.3 ms a hole at 50 holes/s)
    reading: Reading | None


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _points(estimate: dict[str, Any]) -> DepthPoints:
    return DepthPoints(estimate.get("entry_mm"), estimate.get("transition_mm"),
                       estimate.get("exit_mm"))


class DriftService:
    def __init__(self, store: Store, monitor: DriftMonitor | None = None) -> None:
        self._store = store
        self._monitor = monitor or DriftMonitor()
        self._lock = threading.Lock()
        self._drill_of: dict[str, str] = {}  # hole id -> drill, for the labels that come later
        self._alarm_listeners: list[Callable[[DrillDrift], None]] = []

    def replay(self) -> int:
        """Rebuild every drill's state from the event log; returns the events read."""
        events = self._store.drift_events()
        with self._lock:
            for e in events:
                at = e.at.replace(tzinfo=UTC)
                if e.kind == "hole" and e.signals is not None:
                    self._monitor.observe(e.drill, signals_from_json(e.signals), at)
                    if e.hole_id is not None:
                        self._drill_of[e.hole_id] = e.drill
                elif e.kind == "residuals" and e.signals is not None:
                    self._monitor.observe_residuals(e.drill, residuals_from_json(e.signals), at)
                elif e.kind == "reset":
                    self._monitor.reset(e.drill, at)
        return len(events)

    def on_alarm(self, listener: Callable[[DrillDrift], None]) -> None:
        """Called (outside the lock) when a drill goes into alarm."""
        self._alarm_listeners.append(listener)

    def observe_holes(self, holes: Sequence[NewHole]) -> None:
        """New holes, in arrival order (a hole seen before is not counted again)."""
        fresh = [h for h in holes if h.hole_id not in self._drill_of]
        if not fresh:
            return
        signals = [hole_signals(h.trace, h.estimate, h.reading) for h in fresh]
        now = _now()
        events = [DriftEvent(now, s.drill, "hole", h.hole_id, signals_to_json(s))
                  for h, s in zip(fresh, signals, strict=True)]
        raised: list[DrillDrift] = []
        with self._lock:
            self._store.add_drift_events(events)
            for h, s in zip(fresh, signals, strict=True):
                if h.hole_id in self._drill_of:
                    continue
                self._drill_of[h.hole_id] = s.drill
                before = self._monitor.drill(s.drill)
                after = self._monitor.observe(s.drill, s, now.replace(tzinfo=UTC))
                if after.state == "alarm" and (before is None or before.state != "alarm"):
                    raised.append(after)
        self._announce(raised)

    def observe_label(self, hole_id: str, drill_serial: str | None, label: DepthPoints,
                      served: dict[str, Any] | None) -> None:
        """An operator confirmed a hole: what the label says of the estimate they saw."""
        if served is None:
            return
        drill = self._drill_of.get(hole_id) or drill_serial or UNKNOWN_DRILL
        residuals = residual_signals(label, _points(served))
        now = _now()
        with self._lock:
            if self._monitor.drill(drill) is None:
                return  # a drill the watch never saw a hole of (stored before it ran)
            self._store.add_drift_events([DriftEvent(now, drill, "residuals", hole_id,
                                                     residuals_to_json(residuals))])
            before = self._monitor.drill(drill)
            after = self._monitor.observe_residuals(drill, residuals, now.replace(tzinfo=UTC))
        if after.state == "alarm" and (before is None or before.state != "alarm"):
            self._announce([after])

    def reset(self, drill: str, actor: str) -> DrillDrift:
        now = _now()
        with self._lock:
            if self._monitor.drill(drill) is None:
                raise NotFoundError(f"no hole of drill {drill!r} has been seen")
            before = self._monitor.drill(drill)
            self._store.add_drift_events([DriftEvent(now, drill, "reset", None, None)])
            after = self._monitor.reset(drill, now.replace(tzinfo=UTC))
        self._store.audit(actor, "drift-reset", drill,
                          {"state": before.state if before else None,
                           "alarm_at_hole": before.alarm_at_hole if before else None,
                           "holes": after.holes})
        return after

    def drills(self) -> list[DrillDrift]:
        with self._lock:
            return self._monitor.drills()

    def alarmed(self) -> dict[str, DrillDrift]:
        return {d.drill: d for d in self.drills() if d.state == "alarm"}

    def drill_of_hole(self, hole_id: str) -> str | None:
        return self._drill_of.get(hole_id)

    def live_accuracy(self) -> list[LiveAccuracy]:
        holes = []
        for row in self._store.confirmed_labels():
            served = row.from_estimate or {}
            version = served.get("model_version") or "rule-based"
            holes.append(ConfirmedHole(row.hole_id, row.at, points_of(row), _points(served),
                                       version))
        return live_accuracy(holes)

    def _announce(self, raised: list[DrillDrift]) -> None:
        for d in raised:
            log.warning("drift alarm on drill %s at its hole %s: %s", d.drill, d.alarm_at_hole,
                        ", ".join(s.name for s in d.signals if s.state == "alarm"))
            for listener in self._alarm_listeners:
                try:
                    listener(d)
                except Exception:  # a listener (the MQTT bus) must not cost the watch
                    log.exception("drift alarm listener failed")
