"""SQL for the audit trail, the quarantine of rejected inputs and API keys."""

from __future__ import annotations

import hashlib
from typing import Any

import duckdb

from appliance.records import AuditEntry
from appliance.store.codec import dumps, utcnow
from appliance.store.rows import fetch_dicts, fetch_records


def record(
    con: duckdb.DuckDBPyConnection, actor: str, action: str, subject: str | None,
    detail: dict[str, Any] | None,
) -> int:
    [(audit_id,)] = con.execute(
        """INSERT INTO audit ("at", actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)
           RETURNING audit_id""",
        [utcnow(), actor, action, subject, dumps(detail)],
    ).fetchall()
    return int(audit_id)


def entries(
    con: duckdb.DuckDBPyConnection, action: str | None = None, limit: int | None = None
) -> list[AuditEntry]:
    """Audit entries, newest first."""
    sql = 'SELECT audit_id, "at", actor, action, subject, detail FROM audit'
    params: list[Any] = []
    if action is not None:
        sql += " WHERE action = ?"
        params.append(action)
    sql += " ORDER BY audit_id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return fetch_records(con, AuditEntry, sql, params, ("detail",))


def quarantine(
    con: duckdb.DuckDBPyConnection, source: str, error: str, data: bytes | None,
    size: int | None,
) -> int:
    content_hash = hashlib.sha256(data).hexdigest() if data is not None else None
    if size is None and data is not None:
        size = len(data)
    [(quarantine_id,)] = con.execute(
        """INSERT INTO quarantine ("at", source, content_hash, error, size)
           VALUES (?, ?, ?, ?, ?) RETURNING quarantine_id""",
        [utcnow(), source, content_hash, error, size],
    ).fetchall()
    return int(quarantine_id)


def quarantined(con: duckdb.DuckDBPyConnection, limit: int | None = None) -> list[dict[str, Any]]:
    sql = """SELECT quarantine_id, "at", source, content_hash, error, size FROM quarantine
             ORDER BY quarantine_id DESC"""
    params: list[Any] = []
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return fetch_dicts(con, sql, params)


def add_api_key(con: duckdb.DuckDBPyConnection, name: str, key_hash: str, role: str) -> None:
    con.execute("INSERT INTO api_keys (name, key_hash, created_at, role) VALUES (?, ?, ?, ?)",
                [name, key_hash, utcnow(), role])


def api_key(con: duckdb.DuckDBPyConnection, key_hash: str) -> tuple[str, str] | None:
    """(name, role) of the key with this hash."""
    row = con.execute("SELECT name, role FROM api_keys WHERE key_hash = ?",
                      [key_hash]).fetchone()
    return (str(row[0]), str(row[1])) if row else None


def api_key_name(con: duckdb.DuckDBPyConnection, key_hash: str) -> str | None:
    row = con.execute("SELECT name FROM api_keys WHERE key_hash = ?", [key_hash]).fetchone()
    return row[0] if row else None


def api_keys(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    return fetch_dicts(con, "SELECT name, role, created_at FROM api_keys ORDER BY name")


def delete_api_key(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    row = con.execute("DELETE FROM api_keys WHERE name = ? RETURNING name", [name]).fetchone()
    return row is not None
