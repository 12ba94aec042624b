"""SQL for training jobs (the job runner owns their life cycle; this only records it)."""

from __future__ import annotations

import uuid
from typing import Any

import duckdb

from appliance.errors import NotFoundError, ValidationError
from appliance.store.codec import dumps, utcnow
from appliance.store.rows import fetch_dicts, fetch_one, update_columns

_COLUMNS = """job_id, kind, status, params, progress, created_at, started_at, finished_at, error,
              candidate_version, log_tail"""
_JSON = ("params", "progress")
_UPDATABLE = {"status", "params", "progress", "started_at", "finished_at", "error",
              "candidate_version", "log_tail"}


def insert(
    con: duckdb.DuckDBPyConnection, kind: str, params: dict[str, Any] | None, status: str,
    job_id: str | None,
) -> str:
    job_id = job_id or uuid.uuid4().hex[:12]
    con.execute(
        "INSERT INTO jobs (job_id, kind, status, params, created_at) VALUES (?, ?, ?, ?, ?)",
        [job_id, kind, status, dumps(params), utcnow()],
    )
    return job_id


def get(con: duckdb.DuckDBPyConnection, job_id: str) -> dict[str, Any] | None:
    return fetch_one(con, f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", [job_id], _JSON)


def update(con: duckdb.DuckDBPyConnection, job_id: str, fields: dict[str, Any]) -> None:
    unknown = set(fields) - _UPDATABLE
    if unknown:
        raise ValidationError(f"cannot update job field(s) {', '.join(sorted(unknown))}")
    if get(con, job_id) is None:
        raise NotFoundError(f"job {job_id!r} does not exist")
    update_columns(con, "jobs", "job_id", job_id, fields, _JSON)


def list_all(
    con: duckdb.DuckDBPyConnection, status: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Jobs, newest first."""
    sql, params = f"SELECT {_COLUMNS} FROM jobs", []
    if status is not None:
        sql += " WHERE status = ?"
        params.append(status)
    sql += " ORDER BY created_at DESC, job_id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return fetch_dicts(con, sql, params, _JSON)
