"""Live accuracy: how far the served model was from what operators confirmed.

Each operator label keeps the estimate the operator was shown (`from_estimate`, with its
model version), so the error is measured against the answer that was actually served, not a
fresh one. Rolling windows over the most recent confirmations, per model version.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from appliance.points import POINT_NAMES, DepthPoints
from appliance.records import LiveAccuracy, WindowAccuracy

WINDOWS = (50, 200)


@dataclass(frozen=True)
class ConfirmedHole:
    hole_id: str
    at: str  # when the operator confirmed it (ISO, UTC)
    label: DepthPoints
    served: DepthPoints
    model_version: str


def _value(points: DepthPoints, point: str) -> float | None:
    v = getattr(points, f"{point}_mm")
    return None if v is None or not math.isfinite(v) else float(v)


def window_accuracy(holes: Sequence[ConfirmedHole], window: int) -> WindowAccuracy:
    recent = list(holes)[-window:]
    maes: list[float | None] = []
    for point in POINT_NAMES:
        errors = [abs(a - b) for h in recent
                  if (a := _value(h.label, point)) is not None
                  and (b := _value(h.served, point)) is not None]
        maes.append(sum(errors) / len(errors) if errors else None)
    right = [all((_value(h.label, p) is None) == (_value(h.served, p) is None)
                 for p in POINT_NAMES) for h in recent]
    return WindowAccuracy(window, len(recent), maes[0], maes[1], maes[2],
                          sum(right) / len(right) if right else None)


def live_accuracy(holes: Sequence[ConfirmedHole]) -> list[LiveAccuracy]:
    """Per model version, newest confirmations last in `holes`."""
    by_version: dict[str, list[ConfirmedHole]] = {}
    for h in sorted(holes, key=lambda h: h.at):
        by_version.setdefault(h.model_version, []).append(h)
    return [LiveAccuracy(version, len(hs), tuple(window_accuracy(hs, w) for w in WINDOWS))
            for version, hs in sorted(by_version.items())]
