"""The rule-based estimator as the engine's safety net."""

from __future__ import annotations

from dataclasses import replace

from appliance.points import DepthEstimate
from appliance.trace import Trace


def heuristic_estimate(trace: Trace, why: str) -> DepthEstimate:
    """The heuristic's estimate of one hole, with `why` the ensemble did not answer as the note."""
    # Imported here so that a broken estimator module cannot stop the engine from loading.
    from appliance.estimators.heuristic import estimate_heuristic

    try:
        est = estimate_heuristic(trace)
    except Exception as exc:  # a request must get an answer, even "nothing found"
        return DepthEstimate(None, None, None, estimator="heuristic",
                             note=f"{why}; the rule-based estimator failed too: {exc}")
    note = why if not est.note else f"{why}; {est.note}"
    return replace(est, estimator="heuristic", model_version=None, note=note)
