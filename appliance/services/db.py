"""The daemon's view of the store.

appliance.store.Store serialises its own connection (one lock), so threads share it safely;
this adapter only narrows it to what the services use.
"""

from __future__ import annotations

from typing import Any

import msgspec

from appliance.points import DepthEstimate
from appliance.records import AuditEntry, Hole, Label
from appliance.store import Store
from appliance.trace import Trace


class Db:
    def __init__(self, store: Store) -> None:
        self.store = store

    def get_hole(self, hole_id: str) -> Hole:
        return self.store.get_hole(hole_id)

    def get_trace(self, hole_id: str) -> Trace:
        return self.store.get_trace(hole_id)

    def list_holes(self, labelled: bool | None, since: str | None, limit: int | None = None,
                   offset: int = 0, ids: list[str] | None = None) -> list[Hole]:
        return self.store.list_holes(labelled=labelled, since=since, limit=limit,
                                     offset=offset, ids=ids)

    def hole_ids(self, labelled: bool | None, since: str | None) -> list[str]:
        return self.store.hole_ids(labelled=labelled, since=since)

    def hole_drills(self) -> dict[str, str]:
        """Hole id -> its drill's serial ("unknown" without one)."""
        return self.store.hole_drills()

    def count_holes(self, labelled: bool | None, since: str | None) -> int:
        return self.store.count_holes(labelled=labelled, since=since)

    def latest_label(self, hole_id: str) -> Label | None:
        return self.store.latest_label(hole_id)

    def label_history(self, hole_id: str) -> list[Label]:
        return self.store.label_history(hole_id)

    def latest_predictions(self) -> dict[str, dict[str, Any]]:
        """Hole id -> its latest served estimate, as DepthEstimate.as_dict() (the shape the
        service's estimate cache and the MQTT bus hold)."""
        return {p.hole_id: msgspec.structs.asdict(p.estimate)
                for p in self.store.latest_predictions()}

    def add_prediction(self, hole_id: str, estimate: DepthEstimate) -> None:
        self.store.add_prediction(hole_id, estimate)

    def audit_log(self, since: str | None, limit: int, offset: int) -> list[AuditEntry]:
        rows = self.store.audit_log(limit=None if since else limit + offset)
        if since:
            cut = since.replace("+00:00", "")
            rows = [r for r in rows if r.at.rstrip("Z") >= cut.rstrip("Z")]
        return rows[offset:offset + limit]
