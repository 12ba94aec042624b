"""Jobs persisted in the store's jobs table, in the runner's shapes.

Times travel as ISO 8601 UTC text in the runner and become TIMESTAMPs in the store; the log
tail is a list of lines in the runner and one text column in the store.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from appliance.store import Store

_TIMES = ("started_at", "finished_at")


class StoreJobRecords:
    def __init__(self, store: Store) -> None:
        self._store = store

    def create(self, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        job_id = self._store.create_job(kind, params, status="queued")
        return self._shape(self._store.get_job(job_id))

    def update(self, job_id: str, **fields: Any) -> dict[str, Any]:
        values = dict(fields)
        for name in _TIMES:
            if isinstance(values.get(name), str):
                values[name] = _naive_utc(values[name])
        if "log_tail" in values:
            values["log_tail"] = "\n".join(values["log_tail"] or [])
        self._store.update_job(job_id, **values)
        return self._shape(self._store.get_job(job_id))

    def get(self, job_id: str) -> dict[str, Any] | None:
        from appliance.errors import NotFoundError

        try:
            return self._shape(self._store.get_job(job_id))
        except NotFoundError:
            return None

    def list(self, limit: int = 50) -> list[dict[str, Any]]:
        return [self._shape(j) for j in self._store.list_jobs(limit=limit)]

    @staticmethod
    def _shape(row: dict[str, Any]) -> dict[str, Any]:
        out = dict(row)
        tail = out.get("log_tail")
        out["log_tail"] = tail.split("\n") if tail else []
        out["params"] = out.get("params") or {}
        out["progress"] = out.get("progress") or {}
        return out


def _naive_utc(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value
