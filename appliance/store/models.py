"""SQL for model versions and the append-only activation log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

from appliance.errors import NotFoundError, ValidationError
from appliance.store.codec import dumps, utcnow
from appliance.store.rows import fetch_dicts, fetch_one, update_columns

STATUSES = ("candidate", "active", "retired", "rejected")
ACTIONS = ("activate", "rollback", "auto-rollback")

_COLUMNS = """version, parent, architecture, path, created_at, status, gate_report, metrics,
              dataset_hash, manifest"""
_JSON = ("gate_report", "metrics", "manifest")
_UPDATABLE = {"parent", "architecture", "path", "status", "gate_report", "metrics",
              "dataset_hash", "manifest"}


def insert(
    con: duckdb.DuckDBPyConnection,
    version: str,
    path: str,
    architecture: str | None,
    parent: str | None,
    status: str,
    gate_report: dict[str, Any] | None,
    metrics: dict[str, Any] | None,
    dataset_hash: str | None,
    manifest: dict[str, Any] | None,
    created_at: datetime | None,
) -> None:
    _check_status(status)
    if get(con, version) is not None:
        raise ValidationError(f"model version {version!r} is already registered")
    con.execute(
        f"INSERT INTO models ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [version, parent, architecture, path, created_at or utcnow(), status,
         dumps(gate_report), dumps(metrics), dataset_hash, dumps(manifest)],
    )


def get(con: duckdb.DuckDBPyConnection, version: str) -> dict[str, Any] | None:
    return fetch_one(con, f"SELECT {_COLUMNS} FROM models WHERE version = ?", [version], _JSON)


def list_all(con: duckdb.DuckDBPyConnection, status: str | None = None) -> list[dict[str, Any]]:
    sql, params = f"SELECT {_COLUMNS} FROM models", []
    if status is not None:
        _check_status(status)
        sql += " WHERE status = ?"
        params.append(status)
    return fetch_dicts(con, sql + " ORDER BY created_at, version", params, _JSON)


def update(con: duckdb.DuckDBPyConnection, version: str, fields: dict[str, Any]) -> None:
    unknown = set(fields) - _UPDATABLE
    if unknown:
        raise ValidationError(f"cannot update model field(s) {', '.join(sorted(unknown))}")
    if "status" in fields:
        _check_status(fields["status"])
    if get(con, version) is None:
        raise NotFoundError(f"model version {version!r} is not registered")
    update_columns(con, "models", "version", version, fields, _JSON)


def active_version(con: duckdb.DuckDBPyConnection) -> str | None:
    row = con.execute(
        "SELECT version FROM models WHERE status = 'active' ORDER BY created_at DESC LIMIT 1"
    ).fetchone()
    return row[0] if row else None


def record_activation(
    con: duckdb.DuckDBPyConnection,
    version: str,
    previous_version: str | None,
    action: str,
    actor: str,
    reason: str | None,
) -> int:
    if action not in ACTIONS:
        raise ValidationError(f"activation action must be one of {', '.join(ACTIONS)}")
    row = con.execute(
        """INSERT INTO activations ("at", version, previous_version, action, actor, reason)
           VALUES (?, ?, ?, ?, ?, ?) RETURNING activation_id""",
        [utcnow(), version, previous_version, action, actor, reason],
    ).fetchone()
    return int(row[0])


def activations(con: duckdb.DuckDBPyConnection, limit: int | None = None) -> list[dict[str, Any]]:
    """The activation log, newest first."""
    sql = """SELECT activation_id, "at", version, previous_version, action, actor, reason
             FROM activations ORDER BY activation_id DESC"""
    params: list[Any] = []
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return fetch_dicts(con, sql, params)


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValidationError(f"model status must be one of {', '.join(STATUSES)}, got {status!r}")
