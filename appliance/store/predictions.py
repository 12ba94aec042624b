"""SQL for predictions: what an estimator said of a hole, with the model version behind it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from appliance.points import DepthEstimate
from appliance.records import Estimate, Prediction
from appliance.store.codec import dumps, utcnow
from appliance.store.rows import fetch_dicts, one_row

_COLUMNS = """prediction_id, hole_id, model_version, estimator, points, spread, presence,
              created_at, shadow"""
_JSON = ("points", "spread", "presence")
_ARROW = pa.schema([("hole_id", pa.string()), ("model_version", pa.string()),
                    ("estimator", pa.string()), ("points", pa.string()), ("spread", pa.string()),
                    ("presence", pa.string()), ("created_at", pa.timestamp("us")),
                    ("shadow", pa.bool_())])


def _points(estimate: DepthEstimate) -> dict[str, Any]:
    points: dict[str, Any] = dict(estimate.points.as_dict())
    if estimate.confidence:
        points["confidence"] = dict(estimate.confidence)
    if estimate.note:
        points["note"] = estimate.note
    if estimate.review_priority is not None:
        points["review_priority"] = estimate.review_priority
    return points


def insert_many(con: duckdb.DuckDBPyConnection,
                items: Sequence[tuple[str, DepthEstimate, bool]]) -> None:
    """(hole_id, estimate, shadow) rows in one insert from one Arrow table."""
    if not items:
        return
    now = utcnow()
    new_predictions = pa.Table.from_pylist([  # noqa: F841 - read by DuckDB's replacement scan
        {"hole_id": hole_id, "model_version": est.model_version, "estimator": est.estimator,
         "points": dumps(_points(est)), "spread": dumps(dict(est.spread_mm)),
         "presence": dumps(dict(est.presence)), "created_at": now, "shadow": shadow}
        for hole_id, est, shadow in items], schema=_ARROW)
    names = ", ".join(_ARROW.names)
    con.execute(f"INSERT INTO predictions ({names}) SELECT {names} FROM new_predictions")


def insert(
    con: duckdb.DuckDBPyConnection, hole_id: str, estimate: DepthEstimate, shadow: bool
) -> int:
    points = _points(estimate)
    row = one_row(
        con,
        """INSERT INTO predictions (hole_id, model_version, estimator, points, spread, presence,
                                    created_at, shadow)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING prediction_id""",
        [hole_id, estimate.model_version, estimate.estimator, dumps(points),
         dumps(dict(estimate.spread_mm)), dumps(dict(estimate.presence)), utcnow(), shadow],
    )
    return int(row[0])


def for_hole(
    con: duckdb.DuckDBPyConnection, hole_id: str, shadow: bool | None = None
) -> list[Prediction]:
    """The hole's predictions, newest first (shadow None: both kinds)."""
    sql = f"SELECT {_COLUMNS} FROM predictions WHERE hole_id = ?"
    params: list[Any] = [hole_id]
    if shadow is not None:
        sql += " AND shadow = ?"
        params.append(shadow)
    return _predictions(con, sql + " ORDER BY prediction_id DESC", params)


def latest_per_hole(con: duckdb.DuckDBPyConnection, shadow: bool = False) -> list[Prediction]:
    return _predictions(
        con,
        f"""SELECT {_COLUMNS} FROM predictions WHERE shadow = ?
            QUALIFY row_number() OVER (PARTITION BY hole_id ORDER BY prediction_id DESC) = 1
            ORDER BY hole_id""",
        [shadow])


def _predictions(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]
                 ) -> list[Prediction]:
    return [_prediction(row) for row in fetch_dicts(con, sql, params, _JSON)]


def _prediction(row: dict[str, Any]) -> Prediction:
    """A stored row as its record: the one place that knows how _points packed an estimate
    (an older row may lack what later estimates carry)."""
    points = row["points"] or {}
    estimate = Estimate(
        entry_mm=points.get("entry_mm"), transition_mm=points.get("transition_mm"),
        exit_mm=points.get("exit_mm"), spread_mm=row["spread"] or {},
        presence=row["presence"] or {}, confidence=points.get("confidence") or {},
        model_version=row["model_version"], estimator=row["estimator"] or "heuristic",
        note=points.get("note"), review_priority=_number(points.get("review_priority")))
    return Prediction(prediction_id=row["prediction_id"], hole_id=row["hole_id"],
                      created_at=row["created_at"], shadow=row["shadow"], estimate=estimate)


def _number(value: Any) -> float | None:
    """A stored review priority, or None where it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)
