"""SQL for model versions and the append-only activation log.

A row becomes an appliance.records.ModelVersion (an activation an Activation) here and nowhere
else: the gate report, metrics and manifest are JSON columns, the times TIMESTAMPs (ISO 8601
UTC text in the record).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict, get_args

import duckdb
import msgspec

from appliance.errors import ApplianceError, NotFoundError, ValidationError
from appliance.records import (
    Activation,
    ActivationAction,
    GateVerdict,
    ModelStatus,
    ModelVersion,
)
from appliance.store.codec import dumps, iso, json_default, loads, utcnow

STATUSES: tuple[str, ...] = get_args(ModelStatus)
ACTIONS: tuple[str, ...] = get_args(ActivationAction)

_COLUMNS = """version, parent, architecture, path, created_at, status, gate_report, metrics,
              dataset_hash, manifest"""


class ModelChange(TypedDict, total=False):
    """The fields of a registered version that change (its folder and content never do)."""

    status: ModelStatus
    gate_report: GateVerdict | None


_UPDATABLE = frozenset(ModelChange.__annotations__)


def insert(
    con: duckdb.DuckDBPyConnection,
    version: str,
    path: str,
    architecture: str | None,
    parent: str | None,
    status: str,
    gate_report: GateVerdict | None,
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
         _report_json(gate_report), dumps(metrics), dataset_hash, dumps(manifest)],
    )


def get(con: duckdb.DuckDBPyConnection, version: str) -> ModelVersion | None:
    rows = con.execute(f"SELECT {_COLUMNS} FROM models WHERE version = ?", [version]).fetchall()
    return _model(rows[0]) if rows else None


def list_all(con: duckdb.DuckDBPyConnection, status: str | None = None) -> list[ModelVersion]:
    sql, params = f"SELECT {_COLUMNS} FROM models", []
    if status is not None:
        _check_status(status)
        sql += " WHERE status = ?"
        params.append(status)
    rows = con.execute(sql + " ORDER BY created_at, version", params).fetchall()
    return [_model(row) for row in rows]


def update(con: duckdb.DuckDBPyConnection, version: str, fields: ModelChange) -> None:
    unknown = set(fields) - _UPDATABLE
    if unknown:
        raise ValidationError(f"cannot update model field(s) {', '.join(sorted(unknown))}")
    if "status" in fields:
        _check_status(fields["status"])
    if get(con, version) is None:
        raise NotFoundError(f"model version {version!r} is not registered")
    values: dict[str, Any] = dict(fields)
    if "gate_report" in fields:
        values["gate_report"] = _report_json(fields["gate_report"])
    if not values:
        return
    assignments = ", ".join(f"{name} = ?" for name in values)
    con.execute(f"UPDATE models SET {assignments} WHERE version = ?",
                [*values.values(), version])


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
    assert row is not None  # RETURNING gives the inserted row
    return int(row[0])


def activations(con: duckdb.DuckDBPyConnection, limit: int | None = None) -> list[Activation]:
    """The activation log, newest first."""
    sql = """SELECT activation_id, "at", version, previous_version, action, actor, reason
             FROM activations ORDER BY activation_id DESC"""
    params: list[Any] = []
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return [Activation(activation_id=int(row[0]), at=iso(row[1]), version=row[2],
                       previous_version=row[3], action=row[4], actor=row[5], reason=row[6])
            for row in con.execute(sql, params).fetchall()]


def _model(row: tuple[Any, ...]) -> ModelVersion:
    (version, parent, architecture, path, created_at, status, gate_report, metrics,
     dataset_hash, manifest) = row
    try:
        report = None if gate_report is None else msgspec.json.decode(gate_report,
                                                                     type=GateVerdict)
        return ModelVersion(
            version=version, parent=parent, architecture=architecture, path=path,
            created_at=iso(created_at), status=status, gate_report=report,
            metrics=loads(metrics), dataset_hash=dataset_hash, manifest=loads(manifest))
    except msgspec.ValidationError as exc:
        raise ApplianceError(f"model version {version!r} in the store is unreadable: "
                             f"{exc}") from None


def _report_json(report: GateVerdict | None) -> str | None:
    return None if report is None else dumps(msgspec.to_builtins(report,
                                                                 enc_hook=json_default))


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValidationError(f"model status must be one of {', '.join(STATUSES)}, got {status!r}")
