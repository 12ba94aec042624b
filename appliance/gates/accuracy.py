"""Accuracy-regression gate on the frozen exam set (confirmed holes no training ever sees).

The candidate's per-point MAE may exceed the reference's by at most `tolerance_mm`, and its
presence accuracy (share of hole x point decisions that match the label) must not drop.
The reference is the active model, or the rule-based estimator when none is active (that is
what would serve otherwise). Fewer than `min_exam` exam holes is not a pass: the report says
"insufficient evidence" and promotion needs an explicit, audited override.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from appliance.engine.ensemble import Engine
from appliance.engine.holder import ActiveModel
from appliance.evaluation import evaluate
from appliance.gates.report import FAIL, INSUFFICIENT, PASS, GateResult
from appliance.points import POINT_NAMES, DepthEstimate, DepthPoints
from appliance.trace import Trace

GATE = "accuracy"
TOLERANCE_MM = 0.02
MIN_EXAM = 20


class ExamHole(Protocol):
    # read-only, so a frozen record (store.snapshot.LabelledHole) is one
    @property
    def trace(self) -> Trace: ...

    @property
    def label(self) -> DepthPoints: ...


def check_accuracy(
    candidate: Engine,
    reference: Engine | None,
    exam: Sequence[ExamHole],
    tolerance_mm: float = TOLERANCE_MM,
    min_exam: int = MIN_EXAM,
) -> GateResult:
    n = len(exam)
    ref_name = reference.version if reference is not None else "rule-based estimator"
    base = {"exam_holes": n, "min_exam": min_exam, "tolerance_mm": tolerance_mm,
            "reference": ref_name}
    if n < min_exam:
        return GateResult(GATE, INSUFFICIENT,
                          f"only {n} exam hole(s), {min_exam} needed to compare with {ref_name}",
                          base)
    traces = [h.trace for h in exam]
    labels = [h.label for h in exam]
    cand = score(candidate.estimate_many(traces), labels)
    ref = score(ActiveModel(reference).estimate_many(traces), labels)
    problems = []
    # A hole the candidate cannot answer gets the rule-based estimate: that must not count
    # as the candidate's accuracy.
    allowed = ref["fallbacks"] if reference is not None else 0
    if cand["fallbacks"] > allowed:
        problems.append(f"the candidate could not answer {cand['fallbacks']} of {n} exam holes "
                        "(rule-based fallback)")
    for name in POINT_NAMES:
        c, r = cand["points"][name], ref["points"][name]
        if c["mae_mm"] is None or r["mae_mm"] is None:
            continue
        if c["mae_mm"] > r["mae_mm"] + tolerance_mm:
            problems.append(f"{name} MAE {c['mae_mm']:.3f} mm > {ref_name}'s "
                            f"{r['mae_mm']:.3f} mm + {tolerance_mm} mm")
    if cand["presence_accuracy"] < ref["presence_accuracy"]:
        problems.append(f"presence accuracy {cand['presence_accuracy']:.3f} < {ref_name}'s "
                        f"{ref['presence_accuracy']:.3f}")
    details = {**base, "candidate": cand, "reference_scores": ref}
    if problems:
        details["problems"] = problems
        return GateResult(GATE, FAIL, "; ".join(problems), details)
    maes = ", ".join(f"{p} {_fmt(cand['points'][p]['mae_mm'])}" for p in POINT_NAMES)
    return GateResult(GATE, PASS, f"MAE (mm) {maes} on {n} exam holes, no worse than {ref_name}",
                      details)


def score(estimates: Sequence[DepthEstimate], labels: Sequence[DepthPoints]) -> dict[str, Any]:
    """Per-point MAE (with hole counts) and presence accuracy, from the evaluation harness."""
    report = evaluate(list(estimates), list(labels), None)
    points = {name: {"mae_mm": m.mae_mm, "n": m.n, "within_0_5": m.within_0_5}
              for name, m in report.points.items()}
    presence = report.overall.presence_accuracy
    return {"points": points, "presence_accuracy": 1.0 if presence is None else presence,
            "holes": report.n,
            "fallbacks": sum(1 for e in estimates if e.estimator != "ensemble")}


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"
