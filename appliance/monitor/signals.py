"""What each new hole shows the drift detector: a typed record of named floats per hole.

hole_signals(trace, estimate) reads the plateau levels of every program step (levels.py) and
the shape of the estimate (points, presence, layer thicknesses, spread, review priority);
residual_signals(label, estimate) adds what an operator's confirmation says of the estimate,
when it comes (usually long after the hole). Absent values are NaN, never guessed.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace

from appliance.estimators.heuristic import Reading, read_trace
from appliance.monitor.levels import StepLevel, step_levels, steps_run
from appliance.points import POINT_NAMES, DepthEstimate, DepthPoints
from appliance.trace import Trace

NAN = float("nan")
UNKNOWN_DRILL = "unknown"


@dataclass(frozen=True)
class Residuals:
    """Label - estimate per point (mm; NaN unless both have the point) and how many points
    the label and the estimate disagree on the presence of."""

    entry_mm: float
    transition_mm: float
    exit_mm: float
    presence_errors: float

    def get(self, point: str) -> float:
        return float(getattr(self, f"{point}_mm"))


@dataclass(frozen=True)
class HoleSignals:
    """One hole, as the drift detector sees it. `program` names the drilling program (the
    steps' speeds, feeds and travels): holes of one program cut one job, so references are
    kept per program."""

    drill: str
    program: str
    steps: tuple[StepLevel, ...]
    entry_mm: float
    transition_mm: float
    exit_mm: float
    presence_entry: float  # the estimator's probability that the point exists
    presence_transition: float
    presence_exit: float
    first_layer_mm: float  # transition - entry
    last_layer_mm: float  # exit - transition
    stack_mm: float  # exit - entry
    spread_mm: float  # the largest per-point spread of the ensemble (0 for the rules)
    review_priority: float  # the calibrated chance that the estimate is wrong
    residuals: Residuals | None = None  # set once an operator confirmed the hole

    @property
    def pattern(self) -> str:
        """Which points the estimate has, e.g. "ETX", "E-X" (an aborted cycle: "ET-")."""
        marks = zip("ETX", (self.entry_mm, self.transition_mm, self.exit_mm), strict=True)
        return "".join(m if math.isfinite(v) else "-" for m, v in marks)

    def with_residuals(self, residuals: Residuals) -> HoleSignals:
        return replace(self, residuals=residuals)


def drill_of(trace: Trace) -> str:
    """The drill a hole belongs to: its controller's serial number."""
    serial = (trace.meta.drill_serial or "").strip()
    return serial or UNKNOWN_DRILL


def program_key(trace: Trace) -> str:
    """A stable name of the hole's program; the steps run when the trace has no program."""
    if trace.meta.program:
        return " ".join(f"{s.step}:{s.rpm:g}rpm:{s.feed_mm_s:g}mm/s:{s.travel_mm:g}mm"
                        for s in trace.meta.program)
    return "steps " + ",".join(str(s) for s in steps_run(trace.step))


def hole_signals(trace: Trace, estimate: DepthEstimate,
                 reading: Reading | None = None) -> HoleSignals:
    """The signals of one estimated hole. `reading`: the hole's read_trace, when the caller
    has it already (the estimators compute it)."""
    reading = reading if reading is not None else read_trace(trace)
    pts = [_mm(estimate.points.get(n)) for n in POINT_NAMES]
    entry, transition, exit_ = pts
    presence = [_presence(estimate, n, v) for n, v in zip(POINT_NAMES, pts, strict=True)]
    spreads = [v for v in estimate.spread_mm.values() if v is not None and math.isfinite(v)]
    return HoleSignals(
        drill=drill_of(trace),
        program=program_key(trace),
        steps=step_levels(trace, reading),
        entry_mm=entry, transition_mm=transition, exit_mm=exit_,
        presence_entry=presence[0], presence_transition=presence[1],
        presence_exit=presence[2],
        first_layer_mm=transition - entry,
        last_layer_mm=exit_ - transition,
        stack_mm=exit_ - entry,
        spread_mm=max(spreads) if spreads else NAN,
        review_priority=_mm(estimate.review_priority),
    )


def residual_signals(label: DepthPoints, estimate: DepthEstimate | DepthPoints) -> Residuals:
    """What a confirmed label says of the estimate it started from."""
    points = estimate.points if isinstance(estimate, DepthEstimate) else estimate
    diffs: dict[str, float] = {}
    errors = 0
    for n in POINT_NAMES:
        lab, est = label.get(n), points.get(n)
        errors += (lab is None) != (est is None)
        diffs[n] = NAN if lab is None or est is None else float(lab) - float(est)
    return Residuals(diffs["entry"], diffs["transition"], diffs["exit"],
                     presence_errors=float(errors))


def _mm(value: float | None) -> float:
    return NAN if value is None else float(value)


def _presence(estimate: DepthEstimate, name: str, value: float) -> float:
    p = estimate.presence.get(name)
    if p is None:
        return 1.0 if math.isfinite(value) else 0.0
    return float(p)


def signals_to_json(signals: HoleSignals) -> str:
    """The record as JSON (NaN kept as NaN): the daemon's event log stores it for replay."""
    return json.dumps(asdict(signals))


def signals_from_json(text: str) -> HoleSignals:
    raw = json.loads(text)
    steps = tuple(StepLevel(**s) for s in raw.pop("steps"))
    residuals = raw.pop("residuals")
    return HoleSignals(steps=steps, residuals=Residuals(**residuals) if residuals else None,
                       **raw)


def residuals_to_json(residuals: Residuals) -> str:
    return json.dumps(asdict(residuals))


def residuals_from_json(text: str) -> Residuals:
    return Residuals(**json.loads(text))
