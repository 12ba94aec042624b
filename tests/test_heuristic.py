"""The rule-based estimator: accuracy on synthetic holes, absent points, the loader, and
(when ../shared is there) the real labelled logs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from appliance.engine.review import is_wrong
from appliance.errors import ValidationError
from appliance.estimators import Estimator, load_estimator
from appliance.estimators.heuristic import estimate_heuristic
from appliance.evaluation import evaluate
from appliance.points import POINT_NAMES
from appliance.synth import Layer, StackSpec, generate, synthesize
from appliance.trace import ProgramStep, Trace, TraceMeta


@pytest.fixture(scope="module")
def synthetic_run() -> tuple[list, list]:
    holes = generate(500, seed=20261128)
    return holes, [estimate_heuristic(h.trace) for h in holes]


def test_meets_the_accuracy_targets_on_500_synthetic_holes(synthetic_run) -> None:
    # The rules' targets hold on the holes they were written for; the field phenomena the
    # generator also draws (offset steps, hard-over-soft stacks, ...) are where the rules
    # misread and the model must not follow them (test_rules_misread_the_field_phenomena).
    pairs = [(h, e) for h, e in zip(*synthetic_run, strict=True) if not h.spec.phenomena]
    holes, estimates = [h for h, _ in pairs], [e for _, e in pairs]
    report = evaluate(estimates, [h.truth for h in holes],
                      [{"stack": h.spec.stack_type} for h in holes])
    for name in POINT_NAMES:
        m = report.points[name]
        assert m.n > 120, name
        assert m.mae_mm <= 0.15, (name, m.mae_mm)
    assert report.overall.holes_presence_right >= 0.99
    assert set(report.groups["stack"]) >= {"cfrp", "cfrp/ti", "cfrp/al/ti"}


def test_rules_misread_the_field_phenomena(synthetic_run) -> None:
    """What the model has to learn beyond the rules: an offset that steps in air reads as an
    early entry; the exit of a soft layer under a hard one is missed."""
    wrong: dict[str, list[bool]] = {}
    for h, e in zip(*synthetic_run, strict=True):
        for name in h.spec.phenomena:
            wrong.setdefault(name, []).append(is_wrong(e.points, h.truth))
    rate = {k: float(np.mean(v)) for k, v in wrong.items() if len(v) >= 10}
    assert rate.get("offset_step", 0.0) >= 0.3, rate
    assert rate.get("hard_over_soft", 0.0) >= 0.3, rate


def test_estimate_fields_follow_the_points(synthetic_run) -> None:
    _, estimates = synthetic_run
    for est in estimates[:100]:
        assert est.estimator == "heuristic"
        for name in POINT_NAMES:
            value = est.points.get(name)
            assert est.presence[name] == (1.0 if value is not None else 0.0)
            if value is None:
                assert est.confidence[name] is None
            else:
                assert 0.0 <= est.confidence[name] <= 1.0
        assert est.points.order_problem() is None


def _spec(**kw) -> StackSpec:
    base = StackSpec(
        layers=(Layer("cfrp", 8.0, 3.0), Layer("ti", 6.0, 25.0)),
        air_gap_mm=4.0, tool_diameter_mm=6.35, point_angle_deg=118.0,
        steps=(ProgramStep(1, 12.0, 4000.0, 3.0, 0.045),
               ProgramStep(2, 14.0, 1000.0, 0.75, 0.045)),
        backoff_mm=(0.5,), start_depth_mm=1.0, noise_a=0.05, seed=11,
    )
    return replace(base, **kw)


@pytest.mark.parametrize("case, absent", [
    (dict(layers=(Layer("cfrp", 12.0, 3.0),)), "transition"),
    (dict(aborted=True, abort_depth_mm=17.5), "exit"),
    (dict(starts_inside=True, inside_depth_mm=2.0), "entry"),
])
def test_each_absent_point_case_yields_none(case: dict, absent: str) -> None:
    hole = synthesize(_spec(**case))
    assert hole.truth.get(absent) is None
    est = estimate_heuristic(hole.trace)
    assert est.points.get(absent) is None
    assert est.presence[absent] == 0.0
    for name in POINT_NAMES:
        if name != absent:
            assert est.points.get(name) == pytest.approx(hole.truth.get(name), abs=0.15)


def test_step_change_dip_and_speed_jump_are_no_transition() -> None:
    # one material, a program step change with a back-off and a feed change inside it
    spec = _spec(layers=(Layer("cfrp", 14.0, 3.0),),
                 steps=(ProgramStep(1, 11.0, 4000.0, 3.0, 0.045),
                        ProgramStep(2, 20.0, 3000.0, 2.75, 0.055)),
                 backoff_mm=(1.2,))
    est = estimate_heuristic(synthesize(spec).trace)
    assert est.transition_mm is None and est.exit_mm is not None


def test_countersink_rise_is_not_the_exit() -> None:
    spec = _spec(steps=(ProgramStep(1, 30.0, 4000.0, 3.0, 0.045),), backoff_mm=(),
                 countersink=True, countersink_gap_mm=2.0, countersink_torque_a=6.0)
    hole = synthesize(spec)
    est = estimate_heuristic(hole.trace)
    assert est.exit_mm == pytest.approx(hole.truth.exit_mm, abs=0.15)


def _trace(depth: np.ndarray, torque: np.ndarray) -> Trace:
    n = len(depth)
    return Trace(TraceMeta("hand-made", "0" * 64, "synthetic"), depth, torque, torque * 0.03,
                 np.ones(n, dtype=np.int32), np.zeros(n, dtype=np.int64))


def test_air_only_and_tiny_traces_give_no_points() -> None:
    rng = np.random.default_rng(0)
    d = np.linspace(1.0, 20.0, 800)
    est = estimate_heuristic(_trace(d, rng.normal(0.0, 0.03, 800)))
    assert est.points.as_dict() == {"entry_mm": None, "transition_mm": None, "exit_mm": None}
    tiny = estimate_heuristic(_trace(np.array([1.0, 1.01]), np.zeros(2)))
    assert tiny.entry_mm is None and tiny.note


def test_trace_ending_on_the_entry_ramp_has_no_entry() -> None:
    d = np.linspace(1.0, 6.0, 600)
    torque = np.clip((d - 5.3) / 1.0, 0.0, None) ** 2 * 3.0  # rising until the very end
    assert estimate_heuristic(_trace(d, torque)).entry_mm is None


def test_load_estimator_heuristic_and_errors(tmp_path: Path) -> None:
    est = load_estimator("heuristic")
    assert isinstance(est, Estimator) and est.name == "heuristic"
    holes = generate(3, seed=5)
    many = est.estimate_many([h.trace for h in holes])
    assert [e.points for e in many] == [est.estimate(h.trace).points for h in holes]
    with pytest.raises(ValidationError, match="not a model folder"):
        load_estimator(str(tmp_path / "nowhere"))
    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(ValidationError, match="empty-model"):
        load_estimator(str(empty))


@pytest.mark.shared
def test_real_labelled_logs(setitec_dir: Path) -> None:
    """Generalisation guard on the real logs (not tuned file by file): high-confidence
    labels are met closely and presence agrees on nearly every hole."""
    from appliance.evaluation import evaluate_labelled, read_labels

    rows = read_labels(setitec_dir / "labels.csv")
    run = evaluate_labelled(load_estimator("heuristic"), setitec_dir / "labels.csv")
    assert not run.failures
    assert run.report.n == len(rows)
    high = [h for h, r in zip(run.holes, rows, strict=True) if r.confidence == "high"]
    for name in POINT_NAMES:
        errs = [abs(h[f"{name}_err"]) for h in high if h[f"{name}_err"] is not None]
        assert len(errs) > 50
        assert float(np.mean(errs)) <= 0.1, name
    assert run.report.overall.presence_accuracy >= 0.97


def test_load_estimator_model_folder_delegates_to_the_engine(tmp_path: Path) -> None:
    from model_fixtures import build_model_folder

    folder = build_model_folder(tmp_path, "m1", n_members=2)
    est = load_estimator(str(folder))
    assert isinstance(est, Estimator) and est.name.startswith("model:")
    hole = generate(1, seed=8)[0]
    one = est.estimate(hole.trace)
    assert one.estimator in ("ensemble", "heuristic")
    assert [e.points for e in est.estimate_many([hole.trace])] == [one.points]


def test_points_are_never_served_out_of_order() -> None:
    from appliance.points import DepthPoints

    fine = DepthPoints(1.0, 4.0, 9.0)
    assert fine.in_order() == (fine, None)
    crossed, note = DepthPoints(1.0, 12.0, 9.0).in_order()
    assert crossed == DepthPoints(1.0, None, 9.0) and "transition dropped" in (note or "")
    # a no-load offset read as a ramp: the exit above the entry (field case: 36.28 / 0.547)
    reversed_, note = DepthPoints(36.28, None, 0.547).in_order()
    assert reversed_ == DepthPoints(36.28, None, None) and "exit above the entry" in (note or "")
    assert reversed_.order_problem() is None


def test_the_reading_gives_torque_in_units_of_the_drills_no_load_current() -> None:
    from appliance.estimators.heuristic import read_trace

    hole = generate(1, 5)[0].trace
    assert hole.torque_empty_a is not None
    one = read_trace(hole)
    scaled = replace(hole, torque_a=hole.torque_a * 2.5, thrust_a=hole.thrust_a * 2.5,
                     torque_empty_a=hole.torque_empty_a * 2.5)
    other = read_trace(scaled)
    assert one is not None and other is not None and one.per_no_load is not None
    expected = np.percentile(np.abs(hole.torque_a), 99) / np.median(hole.torque_empty_a)
    assert one.per_no_load == pytest.approx(expected)
    assert other.per_no_load == pytest.approx(one.per_no_load)  # free of the current scale
    bare = read_trace(replace(hole, torque_empty_a=None))
    assert bare is not None and bare.per_no_load is None
