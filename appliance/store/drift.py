"""SQL for the drift monitor's event log (see schema v4): append-only, replayed in order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb
import pyarrow as pa


@dataclass(frozen=True)
class DriftEvent:
    at: datetime  # naive UTC
    drill: str
    kind: str  # hole | residuals | reset
    hole_id: str | None
    signals: str | None  # the monitor's own JSON of what it observed


_EVENTS = pa.schema([("at", pa.timestamp("us")), ("drill", pa.string()), ("kind", pa.string()),
                     ("hole_id", pa.string()), ("signals", pa.string())])


def append(con: duckdb.DuckDBPyConnection, events: Sequence[DriftEvent]) -> None:
    """One insert from one Arrow table (executemany pays a statement per row)."""
    if not events:
        return
    new_events = pa.Table.from_pylist(  # noqa: F841 - read by DuckDB's replacement scan
        [{"at": e.at, "drill": e.drill, "kind": e.kind, "hole_id": e.hole_id,
          "signals": e.signals} for e in events], schema=_EVENTS)
    con.execute('INSERT INTO drift_events ("at", drill, kind, hole_id, signals) '
                'SELECT "at", drill, kind, hole_id, signals FROM new_events')


def all_events(con: duckdb.DuckDBPyConnection) -> list[DriftEvent]:
    rows = con.execute('SELECT "at", drill, kind, hole_id, signals FROM drift_events '
                       "ORDER BY event_id").fetchall()
    return [DriftEvent(*r) for r in rows]
