"""SQL for training jobs (the job runner owns their life cycle; this only records it).

A row becomes an appliance.records.Job here and nowhere else: params and progress are JSON
columns, the times TIMESTAMPs (ISO 8601 UTC text in the record), the log tail one text column
(a tuple of lines in the record).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import duckdb
import msgspec

from appliance.errors import ApplianceError, NotFoundError, ValidationError
from appliance.records import Job, JobChange, JobParams, JobProgress
from appliance.store.codec import iso, utcnow

_COLUMNS = """job_id, kind, status, params, progress, created_at, started_at, finished_at, error,
              candidate_version, log_tail"""
_UPDATABLE = frozenset(JobChange.__annotations__)
_TIMES = ("started_at", "finished_at")


def insert(
    con: duckdb.DuckDBPyConnection, kind: str, params: JobParams | None, status: str,
    job_id: str | None,
) -> str:
    job_id = job_id or uuid.uuid4().hex[:12]
    con.execute(
        "INSERT INTO jobs (job_id, kind, status, params, created_at) VALUES (?, ?, ?, ?, ?)",
        [job_id, kind, status, _json(params or JobParams()), utcnow()],
    )
    return job_id


def get(con: duckdb.DuckDBPyConnection, job_id: str) -> Job | None:
    rows = con.execute(f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", [job_id]).fetchall()
    return _job(rows[0]) if rows else None


def update(con: duckdb.DuckDBPyConnection, job_id: str, fields: JobChange) -> None:
    unknown = set(fields) - _UPDATABLE
    if unknown:
        raise ValidationError(f"cannot update job field(s) {', '.join(sorted(unknown))}")
    if get(con, job_id) is None:
        raise NotFoundError(f"job {job_id!r} does not exist")
    if not fields:
        return
    values = {name: _column(name, value) for name, value in fields.items()}
    assignments = ", ".join(f"{name} = ?" for name in values)
    con.execute(f"UPDATE jobs SET {assignments} WHERE job_id = ?", [*values.values(), job_id])


def list_all(
    con: duckdb.DuckDBPyConnection, status: str | None = None, limit: int | None = None
) -> list[Job]:
    """Jobs, newest first."""
    sql = f"SELECT {_COLUMNS} FROM jobs"
    params: list[Any] = []
    if status is not None:
        sql += " WHERE status = ?"
        params.append(status)
    sql += " ORDER BY created_at DESC, job_id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return [_job(row) for row in con.execute(sql, params).fetchall()]


def _job(row: tuple[Any, ...]) -> Job:
    (job_id, kind, status, params, progress, created_at, started_at, finished_at, error,
     candidate_version, log_tail) = row
    try:
        return Job(
            job_id=job_id, kind=kind, status=status,
            params=msgspec.json.decode(params or "{}", type=JobParams),
            progress=msgspec.json.decode(progress or "{}", type=JobProgress),
            created_at=iso(created_at), started_at=iso(started_at),
            finished_at=iso(finished_at), error=error, candidate_version=candidate_version,
            log_tail=tuple(log_tail.split("\n")) if log_tail else ())
    except msgspec.ValidationError as exc:
        raise ApplianceError(f"job {job_id!r} in the store is unreadable: {exc}") from None


def _column(name: str, value: Any) -> Any:
    """A changed field as its column holds it."""
    if name == "progress":
        return _json(value)
    if name == "log_tail":
        return "\n".join(value) if value else None
    if name in _TIMES and isinstance(value, str):
        return _naive_utc(value)
    return value


def _json(value: JobParams | JobProgress) -> str:
    return msgspec.json.encode(value).decode()


def _naive_utc(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value
