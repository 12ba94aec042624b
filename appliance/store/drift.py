"""SQL for the drift monitor's event log (see schema v4): append-only, replayed in order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb


@dataclass(frozen=True)
class DriftEvent:
    at: datetime  # naive UTC
    drill: str
    kind: str  # hole | residuals | reset
    hole_id: str | None
    signals: str | None  # the monitor's own JSON of what it observed


def append(con: duckdb.DuckDBPyConnection, events: Sequence[DriftEvent]) -> None:
    con.executemany(
        'INSERT INTO drift_events ("at", drill, kind, hole_id, signals) VALUES (?, ?, ?, ?, ?)',
        [[e.at, e.drill, e.kind, e.hole_id, e.signals] for e in events])


def all_events(con: duckdb.DuckDBPyConnection) -> list[DriftEvent]:
    rows = con.execute('SELECT "at", drill, kind, hole_id, signals FROM drift_events '
                       "ORDER BY event_id").fetchall()
    return [DriftEvent(*r) for r in rows]
