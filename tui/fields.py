"""Reading the daemon's JSON for display: one place that knows the field names.

The routes and shapes are issue 6's; these helpers turn them into the short strings
the screens show, and say "-" for anything absent rather than failing.
"""

from __future__ import annotations

from typing import Any

from appliance.points import POINT_NAMES


def fmt_mm(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def hole_id(hole: dict[str, Any]) -> Any:
    return hole.get("id", hole.get("hole_id"))


def hole_estimate(hole: dict[str, Any]) -> dict[str, Any]:
    est = hole.get("estimate") or hole.get("prediction") or {}
    return est if isinstance(est, dict) else {}


def hole_label(hole: dict[str, Any]) -> dict[str, Any] | None:
    label = hole.get("label") or hole.get("latest_label")
    return label if isinstance(label, dict) else None


def spread_of(estimate: dict[str, Any]) -> float | None:
    """The largest per-point ensemble spread: how unsure the model is of this hole."""
    spread = estimate.get("spread_mm")
    if isinstance(spread, (int, float)):
        return float(spread)
    if isinstance(spread, dict):
        values = [float(v) for v in spread.values() if isinstance(v, (int, float))]
        return max(values) if values else None
    return None


def hole_spread(hole: dict[str, Any]) -> float | None:
    for key in ("uncertainty_mm", "uncertainty", "max_spread_mm"):
        if isinstance(hole.get(key), (int, float)):
            return float(hole[key])
    return spread_of(hole_estimate(hole))


def hole_priority(hole: dict[str, Any]) -> float | None:
    """The chance (0..1) that the hole's estimate is wrong: the hole's own field, else its
    estimate's (a daemon from before the hole view carried it); None when neither has one."""
    for value in (hole.get("review_priority"), hole_estimate(hole).get("review_priority")):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def fmt_percent(value: float | None) -> str:
    """A 0..1 chance as a whole percentage; under 1 % stays visible as "<1%"."""
    if value is None:
        return "-"
    if 0 < value < 0.005:
        return "<1%"
    return f"{value * 100:.0f}%"


def is_labelled(hole: dict[str, Any]) -> bool:
    if "labelled" in hole:
        return bool(hole["labelled"])
    return hole_label(hole) is not None


def label_status(hole: dict[str, Any]) -> str:
    label = hole_label(hole)
    if label is not None:
        return f"✔ {label.get('by', '')}".strip()
    return "✔" if is_labelled(hole) else "unlabelled"


def hole_time(hole: dict[str, Any]) -> str:
    for key in ("cycle_date", "time", "ingested_at", "created_at"):
        if hole.get(key):
            return str(hole[key]).replace("T", " ")[:19]
    return "-"


def hole_drill(hole: dict[str, Any]) -> str:
    for key in ("drill_serial", "drill", "head_name"):
        if hole.get(key):
            return str(hole[key])
    return "-"


def hole_source(hole: dict[str, Any]) -> str:
    source = str(hole.get("source") or "-")
    return source.rsplit("/", 1)[-1]


def hole_row(hole: dict[str, Any]) -> tuple[str, ...]:
    est = hole_estimate(hole)
    return (
        str(hole_id(hole)),
        hole_source(hole),
        hole_time(hole),
        hole_drill(hole),
        *(fmt_mm(est.get(f"{n}_mm")) for n in POINT_NAMES),
        fmt_percent(hole_priority(hole)),
        fmt_mm(hole_spread(hole), 3),
        label_status(hole),
    )


# "prio": the review priority, the queue's order (the daemon sorts, the screen shows)
HOLE_COLUMNS = ("id", "source", "time", "drill", "entry", "transition", "exit", "prio",
                "spread", "label")
