"""Depth points and estimates: the one vocabulary of labels, truth, estimators and metrics.

See ../shared/docs/depth-points.md. A point is a depth in mm, or None when absent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

POINT_NAMES: tuple[str, str, str] = ("entry", "transition", "exit")


@dataclass(frozen=True)
class DepthPoints:
    entry_mm: float | None
    transition_mm: float | None
    exit_mm: float | None

    def get(self, name: str) -> float | None:
        value: float | None = getattr(self, f"{name}_mm")
        return value

    def as_dict(self) -> dict[str, float | None]:
        return {f"{n}_mm": self.get(n) for n in POINT_NAMES}

    def in_order(self) -> tuple[DepthPoints, str | None]:
        """These points with what breaks entry < transition < exit dropped, and a note: the
        transition first (two points on one crossing, or crossed over), then the exit when it
        still lies above the entry (no exit reading beats one that reverses the stack)."""
        if self.order_problem() is None:
            return self, None
        points = DepthPoints(self.entry_mm, None, self.exit_mm)
        if points.order_problem() is None:
            return points, "points out of order: transition dropped"
        return (DepthPoints(self.entry_mm, None, None),
                "points out of order: transition dropped; exit above the entry dropped")

    def order_problem(self) -> str | None:
        """Why the points are out of order (entry < transition < exit), or None."""
        present = [(n, v) for n in POINT_NAMES if (v := self.get(n)) is not None]
        for (n1, v1), (n2, v2) in zip(present, present[1:], strict=False):
            if not v1 < v2:
                return f"{n1} ({v1} mm) must be shallower than {n2} ({v2} mm)"
        return None


@dataclass(frozen=True)
class DepthEstimate:
    """What an estimator says of one hole.

    spread_mm: disagreement between ensemble members per point (0 for a single estimator);
    presence: probability that each point exists; confidence: the estimator's own 0..1
    trust in each present point; review_priority: the calibrated chance (0..1) that this
    estimate is wrong (a point more than 0.5 mm off, or a presence error), which orders the
    operators' review queue (None where no estimator could judge it).
    """

    entry_mm: float | None
    transition_mm: float | None
    exit_mm: float | None
    spread_mm: dict[str, float | None] = field(default_factory=dict)
    presence: dict[str, float] = field(default_factory=dict)
    confidence: dict[str, float | None] = field(default_factory=dict)
    model_version: str | None = None
    estimator: str = "heuristic"  # "ensemble" | "heuristic"
    note: str | None = None  # e.g. why the fallback estimator answered
    review_priority: float | None = None

    @property
    def points(self) -> DepthPoints:
        return DepthPoints(self.entry_mm, self.transition_mm, self.exit_mm)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
