"""Snapping an estimate onto its ramp's half-height crossing (model picks, convention places)."""

from __future__ import annotations

import pytest

from appliance.estimators.heuristic import estimate_heuristic
from appliance.estimators.snap import snap
from appliance.points import POINT_NAMES
from appliance.synth import generate


def _holes():
    # three-point holes whose rules' reading agrees with the truth: the snap target is known
    out = []
    for h in generate(40, seed=4242):
        est = estimate_heuristic(h.trace).points
        if all(h.truth.get(n) is not None and est.get(n) is not None
               and abs(est.get(n) - h.truth.get(n)) < 0.1 for n in POINT_NAMES):
            out.append((h, est))
    assert len(out) >= 5
    return out


@pytest.mark.parametrize("offset", [-0.3, -0.1, 0.1, 0.3])
def test_a_point_near_its_ramp_moves_onto_the_crossing(offset: float) -> None:
    for h, rules in _holes():
        at = snap(h.trace, {n: rules.get(n) for n in POINT_NAMES})
        moved = snap(h.trace, {n: rules.get(n) + offset for n in POINT_NAMES})
        assert moved == at  # wherever on the ramp the estimate sat, the same crossing
        for n in ("entry", "transition"):  # read as the rules read them
            assert moved[n] == pytest.approx(rules.get(n), abs=2e-3), (h.trace.meta.source, n)
        # the exit's level after is read right after its steep fall (as the checked
        # labels do), which can differ from the rules' joined reading by a few hundredths
        assert moved["exit"] == pytest.approx(h.truth.exit_mm, abs=0.1)


def test_absent_points_stay_absent_and_far_points_stay_put() -> None:
    h, rules = _holes()[0]
    entry, exit_ = rules.get("entry"), rules.get("exit")
    moved = snap(h.trace, {"entry": entry, "transition": None, "exit": exit_})
    assert moved["transition"] is None
    # 2 mm past the exit the tool is in air: no falling ramp there, the point stays put
    far = exit_ + 2.0
    assert snap(h.trace, {"entry": None, "transition": None, "exit": far})["exit"] == far
    assert snap(h.trace, {n: None for n in POINT_NAMES}) == {n: None for n in POINT_NAMES}


def test_an_entry_is_never_snapped_onto_a_fall() -> None:
    h, rules = _holes()[0]
    exit_ = rules.get("exit")
    # an "entry" sitting on the exit's falling ramp has no rising ramp to go to
    assert snap(h.trace, {"entry": exit_, "transition": None, "exit": None})["entry"] == exit_


def test_a_shared_reading_gives_the_same_answers() -> None:
    from appliance.estimators.heuristic import read_trace

    for h, rules in _holes()[:3]:
        reading = read_trace(h.trace)
        pts = {n: rules.get(n) + 0.2 for n in POINT_NAMES}
        assert snap(h.trace, pts, reading) == snap(h.trace, pts)
        assert estimate_heuristic(h.trace, reading) == estimate_heuristic(h.trace)
