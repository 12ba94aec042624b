"""The review priority: its features, its calibration (fitted and checked on held-out
answers), and its place in an estimate."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from appliance.engine.answer import Decoding
from appliance.engine.review import (
    ALL_FEATURES,
    DEFAULT,
    FEATURES,
    PointEvidence,
    ReviewCalibration,
    features,
    fit,
    is_wrong,
)
from appliance.points import DepthPoints


def _evidence(presence=(0.99, 0.01, 0.99), mass=(0.9, 0.9, 0.9), spread=(0.02, 0.0, 0.02),
              on_ramp=(True, False, True), majority=None) -> PointEvidence:
    return PointEvidence(np.array(presence), np.array(mass), np.array(spread),
                         np.array(spread if majority is None else majority),
                         np.array(on_ramp))


def test_features_see_ambiguity_rules_and_rival_ramps() -> None:
    pts = DepthPoints(5.0, None, 20.0)
    calm = features(_evidence(), pts, DepthPoints(5.0, None, 20.0),
                    {"exit": [(19.8, 20.2, 8.0)]})
    assert calm[ALL_FEATURES.index("presence_ambiguity")] == pytest.approx(0.02)
    assert calm[ALL_FEATURES.index("rules_presence")] == 0.0
    assert calm[ALL_FEATURES.index("rival_ramp")] == 0.0
    torn = features(_evidence(presence=(0.99, 0.45, 0.99)), pts, DepthPoints(1.6, 12.0, 20.2),
                    {"exit": [(19.8, 20.2, 4.0), (20.6, 21.0, 8.0)]})
    assert torn[ALL_FEATURES.index("presence_ambiguity")] == pytest.approx(0.9)
    assert torn[ALL_FEATURES.index("rules_presence")] == 1.0  # the rules see a transition
    assert torn[ALL_FEATURES.index("rules_distance")] == 2.0  # entry 3.4 mm apart, capped
    # a bigger fall starting 0.6 mm on: capped at 1 x exp(-0.6 / 2)
    assert torn[ALL_FEATURES.index("rival_ramp")] == pytest.approx(np.exp(-0.3))
    small = features(_evidence(), pts, None, {"exit": [(19.8, 20.2, 8.0), (20.6, 21.0, 2.0)]})
    assert small[ALL_FEATURES.index("rival_ramp")] == pytest.approx(np.exp(-0.3) / 4)
    assert DEFAULT.priority(torn) > DEFAULT.priority(calm)
    # a point on a step of 5 noise widths is weak, on one of 100 it is not
    exit_only = DepthPoints(None, None, 20.0)
    noisy = features(_evidence(), exit_only, None, {"exit": [(19.8, 20.2, 0.5)]}, noise_a=0.1)
    clear = features(_evidence(), exit_only, None, {"exit": [(19.8, 20.2, 10.0)]},
                     noise_a=0.1)
    assert noisy[ALL_FEATURES.index("weak_step")] == pytest.approx(np.exp(-0.5))
    assert clear[ALL_FEATURES.index("weak_step")] == pytest.approx(np.exp(-10.0))


def test_wrong_means_half_a_millimetre_or_a_presence_error() -> None:
    truth = DepthPoints(5.0, 10.0, 20.0)
    assert not is_wrong(DepthPoints(5.4, 10.0, 19.6), truth)
    assert is_wrong(DepthPoints(5.6, 10.0, 20.0), truth)
    assert is_wrong(DepthPoints(5.0, None, 20.0), truth)


AMBIGUITY, RULES = ALL_FEATURES.index("presence_ambiguity"), ALL_FEATURES.index("rules_presence")


def _world(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Features (ALL_FEATURES columns) and 'wrong' drawn from a known logistic law on two."""
    x = rng.random((n, len(ALL_FEATURES)))
    x[:, RULES] = rng.random(n) < 0.2
    z = -4.0 + 5.0 * x[:, AMBIGUITY] + 2.5 * x[:, RULES]
    wrong = rng.random(n) < 1.0 / (1.0 + np.exp(-z))
    return x, wrong


def test_calibration_holds_on_held_out_answers() -> None:
    rng = np.random.default_rng(7)
    x_fit, y_fit = _world(3000, rng)
    x_new, y_new = _world(3000, rng)
    cal = fit(x_fit, y_fit)
    assert cal.fitted and cal.n == 3000 and cal.n_wrong == int(y_fit.sum())
    p = cal.priorities(x_new)
    # calibrated: in each fifth of the predictions the observed share matches the mean
    # (within 3.5 standard errors of a share over 600 holes: <= 0.07)
    order = np.argsort(p)
    for part in np.array_split(order, 5):
        assert abs(p[part].mean() - y_new[part].mean()) < 0.07
    # and better than knowing only the base rate
    base = np.mean((y_fit.mean() - y_new) ** 2)
    assert np.mean((p - y_new) ** 2) < 0.9 * base
    # the features that carry the law weigh most
    coef = np.abs(np.array(cal.coef))
    assert cal.features == FEATURES
    assert {FEATURES[i] for i in np.argsort(coef)[-2:]} == {"presence_ambiguity",
                                                             "rules_presence"}


def test_calibration_round_trips_and_refuses_foreign_features() -> None:
    rng = np.random.default_rng(8)
    cal = fit(*_world(500, rng))
    again = ReviewCalibration.from_dict(cal.to_dict())
    f = rng.random(len(ALL_FEATURES))
    assert again.priority(f) == pytest.approx(cal.priority(f))
    for names in (["spread", "weight"], ["spread", "spread"]):  # unknown, repeated
        with pytest.raises(ValueError, match="features"):
            ReviewCalibration.from_dict(cal.to_dict() | {"features": names})


def test_a_feature_that_separates_keeps_the_fit_finite() -> None:
    x = np.random.default_rng(10).random((400, len(ALL_FEATURES)))
    wrong = x[:, 0] > 0.8  # perfectly separable: an unpenalised fit runs off to infinity
    cal = fit(x, wrong)
    assert np.all(np.isfinite(cal.coef)) and abs(cal.intercept) < 50
    # the separating feature high or low, the others (noise) at their middle
    high, low = np.full(len(ALL_FEATURES), 0.5), np.full(len(ALL_FEATURES), 0.5)
    high[0], low[0] = 0.95, 0.1
    assert cal.priority(high) > 0.9 > 0.1 > cal.priority(low)


def test_nothing_wrong_to_learn_from_keeps_the_default() -> None:
    x = np.random.default_rng(9).random((50, len(ALL_FEATURES)))
    assert fit(x, np.zeros(50, dtype=bool)) is DEFAULT


def test_a_point_below_a_quarter_of_the_no_load_current_is_suspect() -> None:
    entry_only = DepthPoints(3.8, None, None)
    ramps = {"entry": [(3.6, 4.0, 0.35)]}

    def below(points: DepthPoints, per_no_load: float | None) -> float:
        f = features(_evidence(), points, points, ramps, per_no_load=per_no_load)
        return float(f[ALL_FEATURES.index("below_no_load")])

    # air wobble on a drill that logs x2.5: 3.5 % of its no-load current
    assert below(entry_only, 0.035) == pytest.approx(np.log10(0.25 / 0.035))
    assert below(entry_only, 1e-6) == 2.0  # capped
    assert below(entry_only, 0.3) == 0.0  # a cut
    assert below(entry_only, None) == 0.0  # no no-load current logged
    assert below(DepthPoints(None, None, None), 0.035) == 0.0  # nothing reported


def test_a_calibration_weighs_the_features_it_was_fitted_on() -> None:
    # a model folder of an earlier release: its calibration names the first 9 features,
    # "spread" among them, and neither below_no_load nor majority_spread
    rng = np.random.default_rng(11)
    old_names = ALL_FEATURES[:ALL_FEATURES.index("below_no_load")]
    x, wrong = _world(600, rng)
    old = fit(x, wrong, names=old_names)
    stored = old.to_dict()
    assert stored["features"] == list(old_names)
    loaded = ReviewCalibration.from_dict(stored)
    assert loaded.features == old_names
    full = rng.random((5, len(ALL_FEATURES)))
    moved = full.copy()
    moved[:, len(old_names):] += 10.0  # what it never weighed cannot move it
    assert np.allclose(loaded.priorities(moved), loaded.priorities(full))
    spread = full.copy()
    spread[:, ALL_FEATURES.index("spread")] += 10.0  # what it weighed does
    assert not np.allclose(loaded.priorities(spread), loaded.priorities(full))
    # a calibration fitted now weighs the majority's spread, not the whole range
    new = fit(x, wrong)
    assert "majority_spread" in new.features and "spread" not in new.features
    assert np.allclose(new.priorities(spread), new.priorities(full))


def test_one_member_astray_is_outvoted_by_the_majority_spread() -> None:
    from appliance.engine.answer import HoleOutputs, answer_with_features

    # five members agree on the entry and exit; one puts the transition on the exit
    depths = np.array([[6.05, 16.69, 16.73]] + [[6.04, 11.2, 16.73]] * 4)
    probs = np.full((5, 3), 0.99)
    out = HoleOutputs(depths=depths, probs=probs, mass=np.full((5, 3), 0.9), offsets=None,
                      origin_mm=0.0, grid_mm=0.05)
    est, f = answer_with_features(out, None, None, Decoding())
    assert est.transition_mm == pytest.approx(11.2)  # the median: the member is outvoted
    assert est.spread_mm["transition"] == pytest.approx(5.49)
    assert f[ALL_FEATURES.index("spread")] == pytest.approx(np.log1p(54.9))
    assert f[ALL_FEATURES.index("majority_spread")] == pytest.approx(0.0)
    # two astray: the majority itself is split
    split = depths.copy()
    split[1, 1] = 16.7
    _, f2 = answer_with_features(replace(out, depths=split), None, None, Decoding())
    assert f2[ALL_FEATURES.index("majority_spread")] == pytest.approx(np.log1p(54.9))
    # out of fold the whole ensemble's agreement stands in for the one member answering
    alone = HoleOutputs(depths=depths[:1], probs=probs[:1], mass=np.full((1, 3), 0.9),
                        offsets=None, origin_mm=0.0, grid_mm=0.05, peers=out)
    _, f3 = answer_with_features(alone, None, None, Decoding())
    assert f3[ALL_FEATURES.index("majority_spread")] == pytest.approx(0.0)
    assert f3[ALL_FEATURES.index("spread")] == pytest.approx(np.log1p(54.9))
