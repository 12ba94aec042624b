"""The one reference to the serving model, swapped atomically.

A request reads `holder.current()` once and uses that ActiveModel to the end, so a request in
flight finishes on the model it started with even if a swap happens meanwhile. Reading an
attribute is atomic in CPython; the lock only orders concurrent swaps.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from appliance.engine.ensemble import Engine
from appliance.engine.fallback import heuristic_estimate
from appliance.points import DepthEstimate
from appliance.trace import Trace

NO_MODEL_NOTE = "no active model; rule-based estimator"


@dataclass(frozen=True)
class ActiveModel:
    engine: Engine | None
    since: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def version(self) -> str | None:
        return self.engine.version if self.engine else None

    def estimate(self, trace: Trace) -> DepthEstimate:
        return self.estimate_many([trace])[0]

    def estimate_many(self, traces: Sequence[Trace]) -> list[DepthEstimate]:
        if self.engine is None:
            return [heuristic_estimate(t, NO_MODEL_NOTE) for t in traces]
        return self.engine.estimate_many(traces)


class ModelHolder:
    def __init__(self, engine: Engine | None = None) -> None:
        self._lock = threading.Lock()
        self._current = ActiveModel(engine)

    def current(self) -> ActiveModel:
        return self._current

    @property
    def version(self) -> str | None:
        return self._current.version

    def swap(self, engine: Engine | None) -> ActiveModel:
        """Serve `engine` from now on (None: heuristic only); returns what was served before."""
        new = ActiveModel(engine)
        with self._lock:
            old, self._current = self._current, new
        return old

    def estimate(self, trace: Trace) -> DepthEstimate:
        return self._current.estimate(trace)

    def estimate_many(self, traces: Sequence[Trace]) -> list[DepthEstimate]:
        return self._current.estimate_many(traces)
