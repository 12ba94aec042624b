"""SQL for labels: append-only; the latest label (highest label_id) of a hole is its truth."""

from __future__ import annotations

import math
import numbers
from typing import Any

import duckdb

from appliance.errors import ValidationError
from appliance.points import POINT_NAMES, DepthPoints
from appliance.records import Label
from appliance.store.codec import dumps, utcnow
from appliance.store.rows import fetch_records, one_row

ORIGINS = ("operator", "import", "auto")
MAX_BY_LEN = 100  # as the API's LabelIn.by

# One row per labelled hole: its latest label. Used by hole listings, exports and snapshots.
LATEST_LABELS = """
    SELECT * FROM labels
    QUALIFY row_number() OVER (PARTITION BY hole_id ORDER BY label_id DESC) = 1
"""

_COLUMNS = """label_id, hole_id, entry_mm, transition_mm, exit_mm, "by", "at", origin,
              from_estimate, detail"""
_JSON = ("from_estimate", "detail")


def check_points(
    points: DepthPoints, depth_min: float | None, depth_max: float | None, hole_id: str
) -> None:
    """ValidationError unless every present point is finite, inside the hole, and in order."""
    if depth_min is None or depth_max is None:
        depth_min = depth_max = float("nan")  # no finite depth: no point can lie inside
    for name in POINT_NAMES:
        value = points.get(name)
        if value is None:
            continue
        if (not isinstance(value, numbers.Real) or isinstance(value, bool)
                or not math.isfinite(value)):
            raise ValidationError(f"hole {hole_id}: {name} must be a finite number, got {value!r}")
        if not depth_min <= value <= depth_max:
            raise ValidationError(
                f"hole {hole_id}: {name} {value} mm is outside the hole's depth range "
                f"{depth_min:.3f}..{depth_max:.3f} mm"
            )
    problem = points.order_problem()
    if problem:
        raise ValidationError(f"hole {hole_id}: {problem}")


def by_problem(by: str) -> str | None:
    """What is wrong with the name of who set a label, or None. Every label, from any door,
    is held to it: the name is printed in tables, logs and the TUI, where a control character
    would rewrite the operator's screen."""
    text = by.strip()
    if not text:
        return "a label needs the name of who set it (by)"
    if len(text) > MAX_BY_LEN or not text.isprintable():
        return (f"a label's by {text[:MAX_BY_LEN]!r} must be 1-{MAX_BY_LEN} printable "
                "characters (no control characters)")
    return None


def insert_label(
    con: duckdb.DuckDBPyConnection,
    hole_id: str,
    points: DepthPoints,
    by: str,
    origin: str,
    from_estimate: dict[str, Any] | None,
    detail: dict[str, Any] | None,
) -> int:
    if origin not in ORIGINS:
        raise ValidationError(f"label origin must be one of {', '.join(ORIGINS)}, got {origin!r}")
    problem = by_problem(by)
    if problem:
        raise ValidationError(problem)
    row = one_row(
        con,
        """INSERT INTO labels (hole_id, entry_mm, transition_mm, exit_mm, "by", "at", origin,
                               from_estimate, detail)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING label_id""",
        [hole_id, _num(points.entry_mm), _num(points.transition_mm), _num(points.exit_mm),
         by.strip(), utcnow(), origin, dumps(from_estimate), dumps(detail)],
    )
    return int(row[0])


def _num(value: float | None) -> float | None:
    return None if value is None else float(value)


def history(con: duckdb.DuckDBPyConnection, hole_id: str) -> list[Label]:
    """Every label of the hole, oldest first."""
    return fetch_records(
        con, Label, f"SELECT {_COLUMNS} FROM labels WHERE hole_id = ? ORDER BY label_id",
        [hole_id], _JSON)


def latest(con: duckdb.DuckDBPyConnection, hole_id: str) -> Label | None:
    found = fetch_records(
        con, Label,
        f"SELECT {_COLUMNS} FROM labels WHERE hole_id = ? ORDER BY label_id DESC LIMIT 1",
        [hole_id], _JSON)
    return found[0] if found else None


def all_latest(con: duckdb.DuckDBPyConnection) -> list[Label]:
    return fetch_records(
        con, Label, f"SELECT {_COLUMNS} FROM ({LATEST_LABELS}) ORDER BY hole_id", None, _JSON)


def confirmed(con: duckdb.DuckDBPyConnection) -> list[Label]:
    return fetch_records(
        con, Label, f"""SELECT {_COLUMNS} FROM ({LATEST_LABELS})
                        WHERE origin = 'operator' AND from_estimate IS NOT NULL
                        ORDER BY "at" """,
        None, _JSON)


def points_of(label: Label) -> DepthPoints:
    return DepthPoints(label.entry_mm, label.transition_mm, label.exit_mm)
