"""The Trace value type: one drilled hole as arrays plus metadata.

Depth follows ../shared/docs/depth-points.md: millimetres of tool position, positive
into the workpiece (depth = -Position of the Setitec logs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ProgramStep:
    """One active step of the drilling program (steps switched off are not kept)."""

    step: int
    travel_mm: float  # incremental travel of this step (DEP / Stroke)
    rpm: float
    feed_mm_s: float
    feed_mm_rev: float | None = None
    torque_max_a: float | None = None
    thrust_max_a: float | None = None


@dataclass(frozen=True)
class TraceMeta:
    source: str  # file name or message id the trace came from
    content_hash: str  # sha256 hex of the raw input bytes: dedup key
    variant: str  # v4, v4-resaved, v7, v8, v9, v11, v8-synth, v9-synth, json, synthetic
    file_version: int | None = None
    cycle_date: str | None = None  # ISO 8601 as logged (local time), None when unknown
    sample_rate_hz: float = 100.0
    drill_serial: str | None = None  # control box / controller serial number
    head_name: str | None = None
    head_global_counter: int | None = None
    head_local_counter: int | None = None
    program: tuple[ProgramStep, ...] = ()
    cycle_ok: bool | None = None
    predrilled: bool | None = None
    extra: dict[str, str] = field(default_factory=dict)  # anything else worth keeping


# (field, largest magnitude a drilling unit can log, unit)
PHYSICAL_BOUNDS: tuple[tuple[str, float, str], ...] = (
    ("depth_mm", 5_000.0, "mm"), ("torque_a", 1_000.0, "A"), ("thrust_a", 1_000.0, "A"),
    ("torque_empty_a", 1_000.0, "A"), ("thrust_empty_a", 1_000.0, "A"),
)


@dataclass(frozen=True, eq=False)
class Trace:
    """A hole's samples, one entry per 10 ms sample, all arrays of equal length."""

    meta: TraceMeta
    depth_mm: np.ndarray  # float64, positive into the work
    torque_a: np.ndarray  # float64, net torque current (I Torque)
    thrust_a: np.ndarray  # float64, net thrust current (I Thrust)
    step: np.ndarray  # int32, active program step
    stop_code: np.ndarray  # int64, 0 while a step runs
    torque_empty_a: np.ndarray | None = None  # no-load torque current, when logged
    thrust_empty_a: np.ndarray | None = None
    power_w: np.ndarray | None = None
    rpm: np.ndarray | None = None  # per-sample spindle speed when logged (v4)

    def __post_init__(self) -> None:
        n = len(self.depth_mm)
        for name in ("torque_a", "thrust_a", "step", "stop_code", "torque_empty_a",
                     "thrust_empty_a", "power_w", "rpm"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise ValueError(f"Trace.{name} has {len(arr)} samples, depth has {n}")

    def __len__(self) -> int:
        return len(self.depth_mm)

    def physical_problem(self) -> str | None:
        """Why these samples cannot come from a drilling unit, or None. The bounds are far
        beyond any unit's (a stroke of metres, currents of a kiloampere): they catch corrupt
        numbers (a position of 1e308 crashed both estimators), not unusual holes."""
        for name, bound, unit in PHYSICAL_BOUNDS:
            arr = getattr(self, name)
            if arr is None or len(arr) == 0:
                continue
            # NaN is a gap the logs do have (kept, and read around); infinity or a huge
            # finite value is corruption
            with np.errstate(invalid="ignore"):
                bad = np.flatnonzero(np.abs(arr) > bound)
            if bad.size:
                i = int(bad[0])
                return (f"{name} = {float(arr[i])!r} at sample {i} is not a physical value "
                        f"(|{name}| <= {bound:g} {unit})")
        return None

    @property
    def n_samples(self) -> int:
        return len(self.depth_mm)

    @property
    def depth_range(self) -> tuple[float, float]:
        if len(self.depth_mm) == 0:
            return (float("nan"), float("nan"))
        return float(np.min(self.depth_mm)), float(np.max(self.depth_mm))

    def equals(self, other: Trace, atol: float = 0.0) -> bool:
        """Sample-for-sample equality (within atol) of every array present in both."""
        names = ("depth_mm", "torque_a", "thrust_a", "step", "stop_code",
                 "torque_empty_a", "thrust_empty_a", "power_w", "rpm")
        for name in names:
            a, b = getattr(self, name), getattr(other, name)
            if (a is None) != (b is None):
                return False
            if a is not None and (a.shape != b.shape or not np.allclose(a, b, atol=atol, rtol=0)):
                return False
        return True


def advancing_mask(depth_mm: np.ndarray) -> np.ndarray:
    """True for samples deeper than every earlier one: re-travel after a back-off is dropped.

    The depth-point convention reads only samples where the tool advances; the rule-based
    estimator, the synthetic truth and the model features all use this one mask.
    """
    if len(depth_mm) == 0:
        return np.zeros(0, dtype=bool)
    prev_max = np.maximum.accumulate(depth_mm)
    keep = np.empty(len(depth_mm), dtype=bool)
    keep[0] = True
    keep[1:] = depth_mm[1:] > prev_max[:-1]
    return keep
