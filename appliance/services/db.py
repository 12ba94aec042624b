"""The daemon's view of the store: store rows shaped as the API's hole, label and estimate.

appliance.store.Store serialises its own connection (one lock), so threads share it safely;
this adapter only reshapes rows.
"""

from __future__ import annotations

from typing import Any

from appliance.points import DepthEstimate
from appliance.store import Store
from appliance.trace import Trace


def estimate_of(prediction: dict[str, Any]) -> dict[str, Any]:
    """A stored prediction row as DepthEstimate.as_dict()."""
    points = prediction.get("points") or {}
    return {
        "entry_mm": points.get("entry_mm"),
        "transition_mm": points.get("transition_mm"),
        "exit_mm": points.get("exit_mm"),
        "spread_mm": prediction.get("spread") or {},
        "presence": prediction.get("presence") or {},
        "confidence": points.get("confidence") or {},
        "model_version": prediction.get("model_version"),
        "estimator": prediction.get("estimator") or "heuristic",
        "note": points.get("note"),
        "review_priority": points.get("review_priority"),
    }


def label_of_row(row: dict[str, Any]) -> dict[str, Any] | None:
    """The latest label carried by a hole listing row (label_* columns), or None."""
    if row.get("label_id") is None:
        return None
    return {"label_id": row["label_id"], "hole_id": row["hole_id"],
            "entry_mm": row.get("entry_mm"), "transition_mm": row.get("transition_mm"),
            "exit_mm": row.get("exit_mm"), "by": row.get("label_by"),
            "at": row.get("label_at"), "origin": row.get("label_origin")}


class Db:
    def __init__(self, store: Store) -> None:
        self.store = store

    def get_hole(self, hole_id: str) -> dict[str, Any]:
        return self.store.get_hole(hole_id)

    def get_trace(self, hole_id: str) -> Trace:
        return self.store.get_trace(hole_id)

    def list_holes(self, labelled: bool | None, since: str | None, limit: int | None = None,
                   offset: int = 0, ids: list[str] | None = None) -> list[dict[str, Any]]:
        rows = self.store.list_holes(labelled=labelled, since=since, limit=limit, offset=offset,
                                     ids=ids)
        for row in rows:
            row["label"] = label_of_row(row)
        return rows

    def hole_ids(self, labelled: bool | None, since: str | None) -> list[str]:
        return self.store.hole_ids(labelled=labelled, since=since)

    def hole_drills(self) -> dict[str, str]:
        """Hole id -> its drill's serial ("unknown" without one)."""
        return self.store.hole_drills()

    def count_holes(self, labelled: bool | None, since: str | None) -> int:
        return self.store.count_holes(labelled=labelled, since=since)

    def latest_label(self, hole_id: str) -> dict[str, Any] | None:
        return self.store.latest_label(hole_id)

    def label_history(self, hole_id: str) -> list[dict[str, Any]]:
        return self.store.label_history(hole_id)

    def latest_predictions(self) -> dict[str, dict[str, Any]]:
        return {p["hole_id"]: estimate_of(p) for p in self.store.latest_predictions()}

    def add_prediction(self, hole_id: str, estimate: DepthEstimate) -> None:
        self.store.add_prediction(hole_id, estimate)

    def audit_log(self, since: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        rows = self.store.audit_log(limit=None if since else limit + offset)
        if since:
            cut = since.replace("+00:00", "")
            rows = [r for r in rows if str(r["at"]).rstrip("Z") >= cut.rstrip("Z")]
        return rows[offset:offset + limit]
