"""Jobs persisted in the store's jobs table (the runner's JobRecords)."""

from __future__ import annotations

from typing import Unpack

from appliance.errors import NotFoundError
from appliance.records import Job, JobChange, JobParams
from appliance.store import Store


class StoreJobRecords:
    def __init__(self, store: Store) -> None:
        self._store = store

    def create(self, kind: str, params: JobParams) -> Job:
        return self._store.get_job(self._store.create_job(kind, params, status="queued"))

    def update(self, job_id: str, **fields: Unpack[JobChange]) -> Job:
        self._store.update_job(job_id, **fields)
        return self._store.get_job(job_id)

    def get(self, job_id: str) -> Job | None:
        try:
            return self._store.get_job(job_id)
        except NotFoundError:
            return None

    def list(self, limit: int = 50) -> list[Job]:
        return self._store.list_jobs(limit=limit)
