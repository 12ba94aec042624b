"""How the screens show what the daemon serves: short strings, "-" for anything absent.

The records themselves (appliance.records) are decoded by tui.client; what is here is only
their display: millimetres, chances as percentages, and a hole's row of the review queue.
"""

from __future__ import annotations

from appliance.points import POINT_NAMES, DepthPoints
from appliance.records import Estimate, Hole, Label


def points_of(record: Estimate | Label) -> DepthPoints:
    """The three depth points an estimate or a label carries."""
    return DepthPoints(record.entry_mm, record.transition_mm, record.exit_mm)


def fmt_mm(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def fmt_percent(value: float | None) -> str:
    """A 0..1 chance as a whole percentage; under 1 % stays visible as "<1%"."""
    if value is None:
        return "-"
    if 0 < value < 0.005:
        return "<1%"
    return f"{value * 100:.0f}%"


def label_status(hole: Hole) -> str:
    if hole.label is not None:
        return f"✔ {hole.label.by}".strip()
    return "✔" if hole.labelled else "unlabelled"


def hole_time(hole: Hole) -> str:
    """When the hole was drilled (the controller's cycle date), else when it was stored."""
    return (hole.cycle_date or hole.ingested_at).replace("T", " ")[:19] or "-"


def hole_drill(hole: Hole) -> str:
    return hole.drill_serial or hole.head_name or "-"


def hole_source(hole: Hole) -> str:
    """The upload's file name: a folder in front of it tells an operator nothing."""
    return hole.source.rsplit("/", 1)[-1] or "-"


def hole_row(hole: Hole) -> tuple[str, ...]:
    points = None if hole.estimate is None else points_of(hole.estimate)
    return (
        hole.hole_id,
        hole_source(hole),
        hole_time(hole),
        hole_drill(hole),
        *(fmt_mm(None if points is None else points.get(n)) for n in POINT_NAMES),
        fmt_percent(hole.review_priority),
        fmt_mm(hole.uncertainty_mm, 3),
        label_status(hole),
    )


# "prio": the review priority, the queue's order (the daemon sorts, the screen shows)
HOLE_COLUMNS = ("id", "source", "time", "drill", "entry", "transition", "exit", "prio",
                "spread", "label")
