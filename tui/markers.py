"""What the hole screen edits: the plotted trace and the operator's three markers.

Pure logic (numpy, no widgets) so that it is tested on its own. Depths follow
../shared/docs/depth-points.md: millimetres of tool position, positive into the work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from appliance.estimators.snap import ramp_crossings
from appliance.points import POINT_NAMES, DepthPoints

FINE_STEP_MM = 0.05
COARSE_STEP_MM = 1.0


@dataclass(frozen=True)
class PlotTrace:
    """The (downsampled) samples the plot draws, in sample order."""

    depth_mm: np.ndarray
    torque_a: np.ndarray
    thrust_a: np.ndarray | None = None
    step: np.ndarray | None = None
    _crossings: dict[str, list[float]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def depth_range(self) -> tuple[float, float]:
        if len(self.depth_mm) == 0:
            return (0.0, 1.0)
        return float(np.nanmin(self.depth_mm)), float(np.nanmax(self.depth_mm))

    def crossings_mm(self, name: str | None = None) -> list[float]:
        """Where point `name` could sit (see half_height_crossings), computed once per trace
        and point: snapping asks for them on every key press."""
        key = name or ""
        if key not in self._crossings:
            self._crossings[key] = half_height_crossings(self, name)
        return self._crossings[key]

    def step_changes_mm(self) -> list[float]:
        """Depths where the program step changes (torque dips there that are not points)."""
        if self.step is None or len(self.step) < 2:
            return []
        idx = np.flatnonzero(np.diff(self.step) != 0) + 1
        return [float(self.depth_mm[i]) for i in idx]


def trace_from_json(body: Any) -> PlotTrace:
    """The daemon's trace response -> PlotTrace; a clear ValueError when it lacks a series."""
    if isinstance(body, dict) and isinstance(body.get("trace"), dict):
        body = body["trace"]
    if isinstance(body, dict) and isinstance(body.get("samples"), dict):
        body = body["samples"]
    if isinstance(body, dict) and isinstance(body.get("samples"), list):
        body = body["samples"]
    if isinstance(body, list):  # rows of {"depth_mm": .., "torque_a": ..}
        body = {k: [row.get(k) for row in body] for k in (body[0] if body else {})}
    if not isinstance(body, dict):
        raise ValueError("trace response is not an object of sample arrays")

    def series(*names: str) -> np.ndarray | None:
        for name in names:
            if body.get(name) is not None:
                return np.asarray(body[name], dtype=float)
        return None

    def required(*names: str) -> np.ndarray:
        found = series(*names)
        if found is None:
            raise ValueError(f"trace response lacks {names[0]!r}")
        return found

    depth = required("depth_mm", "depth")
    torque = required("torque_a", "torque")
    thrust = series("thrust_a", "thrust")
    step = series("step", "steps")
    if len(torque) != len(depth):
        raise ValueError(f"trace response has {len(depth)} depths but {len(torque)} torques")
    return PlotTrace(depth, torque, thrust, step)


def half_height_crossings(trace: PlotTrace, name: str | None = None) -> list[float]:
    """Depths, sorted, where point `name` (entry, transition, exit; None: any) could sit: the
    half-height crossing of each torque ramp of its direction, read by the convention's own
    rules (appliance.estimators.snap), the same reading that places a model's answers."""
    if len(trace.depth_mm) < 4:
        return []
    return ramp_crossings(trace.depth_mm, trace.torque_a, trace.step, name)


@dataclass
class MarkerSet:
    """The operator's working copy of a hole's points, starting from the estimate."""

    values: dict[str, float | None]
    depth_range: tuple[float, float]
    selected: str = "entry"
    touched: set[str] = field(default_factory=set)

    @classmethod
    def start(
        cls,
        estimate: DepthPoints | None,
        label: DepthPoints | None,
        depth_range: tuple[float, float],
    ) -> MarkerSet:
        """Markers begin at the operator's latest label when there is one, else the estimate."""
        source = label or estimate
        values = {n: None if source is None else source.get(n) for n in POINT_NAMES}
        return cls(values=values, depth_range=depth_range)

    def select(self, name: str) -> None:
        if name not in POINT_NAMES:
            raise ValueError(f"unknown point {name!r}; expected one of {POINT_NAMES}")
        self.selected = name

    def cycle(self, delta: int = 1) -> str:
        i = POINT_NAMES.index(self.selected)
        self.selected = POINT_NAMES[(i + delta) % len(POINT_NAMES)]
        return self.selected

    def move(self, delta_mm: float) -> float:
        """Move the selected marker; an absent one reappears mid-view first."""
        lo, hi = self.depth_range
        current = self.values[self.selected]
        if current is None:
            current = self._default_position()
            delta_mm = 0.0
        new = min(hi, max(lo, round(current + delta_mm, 3)))
        self.values[self.selected] = new
        self.touched.add(self.selected)
        return new

    def set(self, name: str, value: float | None) -> None:
        if value is not None:
            lo, hi = self.depth_range
            value = min(hi, max(lo, float(value)))
        self.values[name] = value
        self.touched.add(name)

    def toggle_absent(self) -> float | None:
        """Absent <-> present: a point that is not in this hole is null, never guessed."""
        if self.values[self.selected] is None:
            return self.move(0.0)
        self.values[self.selected] = None
        self.touched.add(self.selected)
        return None

    def snap(self, trace: PlotTrace, direction: int = 1) -> float | None:
        """Move the selected marker to the next half-height crossing in `direction`."""
        current = self.values[self.selected]
        if current is None:
            current = self.depth_range[0] if direction > 0 else self.depth_range[1]
        crossings = trace.crossings_mm(self.selected)
        eps = 1e-3
        if direction > 0:
            ahead = [c for c in crossings if c > current + eps]
            target = ahead[0] if ahead else None
        else:
            behind = [c for c in crossings if c < current - eps]
            target = behind[-1] if behind else None
        if target is not None:
            self.set(self.selected, round(target, 3))
        return target

    @property
    def points(self) -> DepthPoints:
        return DepthPoints(self.values["entry"], self.values["transition"], self.values["exit"])

    @property
    def thickness_mm(self) -> float | None:
        """exit - entry: the stack thickness (grip length)."""
        entry, exit_ = self.values["entry"], self.values["exit"]
        if entry is None or exit_ is None:
            return None
        return exit_ - entry

    def problem(self) -> str | None:
        """Why the label would be refused (order), checked before it is sent."""
        return self.points.order_problem()

    def _default_position(self) -> float:
        lo, hi = self.depth_range
        present = {n: v for n, v in self.values.items() if v is not None}
        i = POINT_NAMES.index(self.selected)
        before = [present[n] for n in POINT_NAMES[:i] if n in present]
        after = [present[n] for n in POINT_NAMES[i + 1 :] if n in present]
        a = max(before) if before else lo
        b = min(after) if after else hi
        return round((a + b) / 2, 3)

