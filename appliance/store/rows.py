"""Small helpers shared by the SQL modules: results as dicts or records, JSON and timestamp
columns."""

from __future__ import annotations

from collections.abc import Iterable
from types import GenericAlias
from typing import Any, TypeVar

import duckdb
import msgspec

from appliance.store.codec import dumps, iso, loads

R = TypeVar("R")


def fetch_dicts(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: list[Any] | None = None,
    json_columns: Iterable[str] = (),
) -> list[dict[str, Any]]:
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    json_cols = set(json_columns)
    out = []
    for values in cur.fetchall():
        row = {}
        for name, value in zip(names, values, strict=True):
            if name in json_cols:
                value = loads(value)
            row[name] = iso(value)
        out.append(row)
    return out


def fetch_records(
    con: duckdb.DuckDBPyConnection,
    cls: type[R],
    sql: str,
    params: list[Any] | None = None,
    json_columns: Iterable[str] = (),
) -> list[R]:
    """The rows as records of cls (appliance.records), the columns named as its fields,
    checked and converted in one msgspec call."""
    rows: list[R] = msgspec.convert(fetch_dicts(con, sql, params, json_columns),
                                    GenericAlias(list, (cls,)))
    return rows


def fetch_one(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: list[Any] | None = None,
    json_columns: Iterable[str] = (),
) -> dict[str, Any] | None:
    found = fetch_dicts(con, sql, params, json_columns)
    return found[0] if found else None


def one_row(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None
) -> tuple[Any, ...]:
    """The single row of a statement that always yields one (an aggregate, INSERT ...
    RETURNING); DuckDB's fetchone() is typed optional for the general case."""
    row = con.execute(sql, params or []).fetchone()
    if row is None:
        raise RuntimeError(f"expected one row, got none: {sql.split()[0]} ...")
    return row


def update_columns(
    con: duckdb.DuckDBPyConnection, table: str, key_column: str, key: Any,
    fields: dict[str, Any], json_columns: Iterable[str] = (),
) -> None:
    """Set the given columns of one row (callers check names against their own allow-list)."""
    if not fields:
        return
    json_set = set(json_columns)
    values = [dumps(v) if k in json_set else v for k, v in fields.items()]
    assignments = ", ".join(f"{k} = ?" for k in fields)
    con.execute(f"UPDATE {table} SET {assignments} WHERE {key_column} = ?", [*values, key])
