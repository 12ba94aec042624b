"""Features (numpy, serving side): grid, channels, scalars, decoding. Torch-free."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from appliance.errors import ValidationError
from appliance.features import (
    CHANNELS,
    SCALARS,
    FeatureSpec,
    advancing_mask,
    decode,
    make_batch,
    points_array,
    refine_positions,
    target_positions,
)
from appliance.points import DepthPoints
from appliance.trace import ProgramStep, Trace, TraceMeta

REPO = Path(__file__).resolve().parent.parent


def make_trace(depth, torque, step=None, program=(), rpm=None, torque_empty=None,
               counter=None, predrilled=None, source="t.xls") -> Trace:
    depth = np.asarray(depth, dtype=np.float64)
    torque = np.asarray(torque, dtype=np.float64)
    n = len(depth)
    step = np.ones(n, np.int32) if step is None else np.asarray(step, np.int32)
    meta = TraceMeta(source=source, content_hash="0" * 64, variant="synthetic",
                     program=tuple(program), head_local_counter=counter, predrilled=predrilled)
    return Trace(meta, depth, torque, torque * 0.5, step, np.zeros(n, np.int64),
                 torque_empty_a=None if torque_empty is None else np.asarray(torque_empty, float),
                 rpm=None if rpm is None else np.asarray(rpm, float))


SPEC = FeatureSpec(grid_mm=0.05, length=400)


def test_advancing_mask_drops_retravel_after_backoff():
    d = np.array([1.0, 1.1, 1.2, 0.9, 1.0, 1.1, 1.2, 1.25, 1.3])
    assert advancing_mask(d).tolist() == [True, True, True, False, False, False, False,
                                          True, True]


def test_retravel_values_never_reach_the_grid():
    # Advance 1..10 mm at torque 2 A, back off 1 mm and re-travel at 99 A, then go on.
    fwd = np.arange(1.0, 10.0, 0.01)
    back = np.arange(9.0, 10.0, 0.01)
    on = np.arange(10.0, 15.0, 0.01)
    depth = np.concatenate([fwd, back, on])
    torque = np.concatenate([np.full(len(fwd), 2.0), np.full(len(back), 99.0),
                             np.full(len(on), 2.0)])
    b = make_batch([make_trace(depth, torque)], SPEC)
    torque_ch = b.x[0, CHANNELS.index("torque")]
    valid = b.x[0, CHANNELS.index("valid")] > 0
    assert np.allclose(torque_ch[valid], torque_ch[valid][0])  # constant: 99 A never seen
    assert np.count_nonzero(valid) == pytest.approx((15.0 - 1.0) / 0.05, abs=2)


def test_grid_cell_holds_mean_of_slow_feed_samples_and_interpolates_fast_feed():
    # Slow feed: 50 samples per 0.05 mm cell, alternating 1 and 3 A -> cell mean 2 A.
    slow = np.arange(2.0, 4.0, 0.001)
    alt = np.where(np.arange(len(slow)) % 2 == 0, 1.0, 3.0)
    b = make_batch([make_trace(slow, alt + 10.0)], SPEC)
    t = b.x[0, 0] * (10 ** b.scalars[0, SCALARS.index("log_torque_scale")])
    inner = slice(int(2.1 / 0.05), int(3.9 / 0.05))
    assert np.allclose(t[inner], 12.0, atol=1e-6)
    # Fast feed: one sample every 0.2 mm of a linear ramp -> cells between are interpolated.
    fast = np.arange(2.0, 12.0, 0.2)
    b = make_batch([make_trace(fast, fast * 2.0)], SPEC)
    t = b.x[0, 0] * (10 ** b.scalars[0, SCALARS.index("log_torque_scale")])
    cells = np.arange(SPEC.length) * 0.05
    inner = (cells > 2.3) & (cells < 11.5)
    assert np.allclose(t[inner], cells[inner] * 2.0, atol=1e-5)


def test_padding_and_crop_fit_the_fixed_length():
    depth = np.arange(0.6, 30.0, 0.03)  # deeper than the 20 mm grid: cropped
    b = make_batch([make_trace(depth, np.ones_like(depth))], SPEC)
    assert b.x.shape == (1, len(SPEC.channels), SPEC.length)
    assert b.x.dtype == np.float32 and b.scalars.dtype == np.float32
    valid = b.x[0, CHANNELS.index("valid")]
    assert valid[: int(0.6 / 0.05) - 1].sum() == 0  # air padding before the first sample
    assert valid[-1] == 1.0  # the hole runs off the end of the grid
    assert b.origin_mm[0] == SPEC.start_mm


def test_step_marker_speed_and_scalars():
    depth = np.arange(1.0, 12.0, 0.02)
    step = np.where(depth < 6.0, 1, 2)
    prog = (ProgramStep(1, 6.0, 4000.0, 3.0), ProgramStep(2, 6.0, 1000.0, 1.0))
    b = make_batch([make_trace(depth, np.ones_like(depth), step=step, program=prog,
                               counter=20, predrilled=True)], SPEC)
    marker = b.x[0, CHANNELS.index("step_change")]
    assert np.flatnonzero(marker).tolist() == [round(6.0 / 0.05)]
    speed = b.x[0, CHANNELS.index("speed")]
    assert speed[round(3.0 / 0.05)] == pytest.approx(4.0)
    assert speed[round(9.0 / 0.05)] == pytest.approx(1.0)
    s = dict(zip(SPEC.scalars, b.scalars[0], strict=True))
    assert s["local_counter"] == pytest.approx(np.log1p(20) / 5, rel=1e-6)
    assert s["local_counter_known"] == 1.0 and s["predrilled"] == 1.0
    assert s["predrilled_known"] == 1.0 and s["speed_is_rpm"] == 1.0


def test_step_marker_survives_a_step_change_that_backs_off():
    # The new step starts with a 0.5 mm back-off: its first samples are re-travel and
    # dropped, so the marker belongs on the first advancing sample of step 2.
    fwd = np.arange(1.0, 6.0, 0.02)
    back = np.arange(5.5, 6.0, 0.02)
    on = np.arange(6.0, 12.0, 0.02)
    depth = np.concatenate([fwd, back, on])
    step = np.concatenate([np.ones(len(fwd)), np.full(len(back) + len(on), 2)])
    b = make_batch([make_trace(depth, np.ones_like(depth), step=step)], SPEC)
    marker = b.x[0, CHANNELS.index("step_change")]
    assert np.flatnonzero(marker).tolist() == [round(6.0 / 0.05)]
    # Models trained on version 1 features keep getting what they were trained on.
    old = FeatureSpec.of_version(1, grid_mm=0.05, length=400)
    b1 = make_batch([make_trace(depth, np.ones_like(depth), step=step)], old)
    assert not b1.x[0, CHANNELS.index("step_change")].any()
    with pytest.raises(ValidationError, match="version 99"):
        FeatureSpec(version=99)


def test_speed_falls_back_to_logged_rpm_then_no_load_current():
    depth = np.arange(1.0, 5.0, 0.02)
    with_rpm = make_trace(depth, np.ones_like(depth), rpm=np.full(len(depth), -2500.0))
    proxy = make_trace(depth, np.ones_like(depth), torque_empty=np.full(len(depth), 0.7))
    unknown = make_trace(depth, np.ones_like(depth))
    b = make_batch([with_rpm, proxy, unknown], SPEC)
    sp, known = CHANNELS.index("speed"), SCALARS.index("speed_is_rpm")
    mid = round(3.0 / 0.05)
    assert b.x[0, sp, mid] == pytest.approx(2.5) and b.scalars[0, known] == 1.0
    assert b.x[1, sp, mid] == pytest.approx(0.7) and b.scalars[1, known] == 0.0
    assert b.x[2, sp, mid] == 0.0 and b.scalars[2, known] == 0.0
    assert b.scalars[2, SCALARS.index("local_counter_known")] == 0.0


def test_robust_scale_makes_torque_shape_independent_of_amplitude():
    depth = np.arange(1.0, 15.0, 0.02)
    shape = np.clip((depth - 5.0) / 0.5, 0, 1)
    b = make_batch([make_trace(depth, shape * 3.0), make_trace(depth, shape * 30.0)], SPEC)
    assert np.allclose(b.x[0, :3], b.x[1, :3], atol=1e-5)
    ls = SCALARS.index("log_torque_scale")
    assert b.scalars[1, ls] - b.scalars[0, ls] == pytest.approx(1.0, abs=1e-5)


def test_bad_traces_are_rejected_with_their_source():
    with pytest.raises(ValidationError, match="bad.xls.*at least 2 samples"):
        make_batch([make_trace([1.0], [0.0], source="bad.xls")], SPEC)
    with pytest.raises(ValidationError, match="nan.xls.*torque_a.*non-finite"):
        make_batch([make_trace([1.0, 1.1, 1.2], [0.0, np.nan, 0.0], source="nan.xls")], SPEC)


def test_spec_roundtrip_and_validation():
    spec = FeatureSpec(grid_mm=0.04, length=512)
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValidationError, match="grid_mm"):
        FeatureSpec(grid_mm=0.1)
    with pytest.raises(ValidationError, match="unknown keys"):
        FeatureSpec.from_dict({**spec.to_dict(), "bogus": 1})
    with pytest.raises(ValidationError, match="channels"):
        FeatureSpec.from_dict({**spec.to_dict(), "channels": ["torque"]})


def _scores_at(positions: np.ndarray, length: int, sigma: float = 1.0) -> np.ndarray:
    grid = np.arange(length)
    return -0.5 * ((grid[None, None, :] - positions[..., None]) / sigma) ** 2


def test_decode_recovers_subgrid_positions_and_presence():
    depth = np.arange(1.0, 18.0, 0.02)
    b = make_batch([make_trace(depth, np.ones_like(depth))] * 2, SPEC)
    truth = [DepthPoints(5.013, 11.987, 16.0301), DepthPoints(3.3, None, 17.777)]
    pos, present, usable = target_positions(truth, b, SPEC)
    assert present.tolist() == [[1, 1, 1], [1, 0, 1]]
    logits = np.where(present > 0, 6.0, -6.0)
    out = decode(_scores_at(pos, SPEC.length), logits, b, SPEC)
    for d, t in zip(out, truth, strict=True):
        for name in ("entry", "transition", "exit"):
            want, got = t.get(name), d.points.get(name)
            assert (want is None) == (got is None)
            if want is not None:
                assert got == pytest.approx(want, abs=0.002)
    assert out[1].presence["transition"] < 0.5
    arr = points_array(out)
    assert np.isnan(arr[1, 1]) and arr[0, 2] == pytest.approx(16.0301, abs=0.002)


def test_refine_beats_argmax_by_more_than_half_a_cell():
    pos = np.array([[10.0, 10.3, 10.5]])
    refined, mass = refine_positions(_scores_at(pos, 64))
    assert np.allclose(refined, pos, atol=0.01)
    assert np.all(mass > 0.99)


def test_decode_rejects_mismatched_shapes():
    depth = np.arange(1.0, 5.0, 0.02)
    b = make_batch([make_trace(depth, np.ones_like(depth))], SPEC)
    with pytest.raises(ValueError, match="do not match"):
        decode(np.zeros((1, 3, 10)), np.zeros((1, 3)), b, SPEC)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_serving_code_never_imports_torch():
    offenders = []
    for folder in ("appliance", "api", "tui"):
        for path in (REPO / folder).rglob("*.py") if (REPO / folder).is_dir() else []:
            if "train" in path.relative_to(REPO).parts[:2]:
                continue
            if _imports(path) & {"torch", "transformers", "safetensors", "onnxscript"}:
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


def test_start_and_end_torque_flag_holes_that_start_or_end_inside_the_stack():
    depth = np.arange(1.0, 20.0, 0.02)
    in_air_first = np.where((depth > 5.0) & (depth < 15.0), 8.0, 0.0)
    inside_first = np.where(depth < 15.0, 8.0, 0.0)
    aborted = np.where(depth > 5.0, 8.0, 0.0)
    b = make_batch([make_trace(depth, t) for t in (in_air_first, inside_first, aborted)], SPEC)
    st, en = SCALARS.index("start_torque"), SCALARS.index("end_torque")
    assert b.scalars[:, st].tolist() == pytest.approx([0.0, 1.0, 0.0], abs=1e-6)
    assert b.scalars[:, en].tolist() == pytest.approx([0.0, 0.0, 1.0], abs=1e-6)


def test_rule_channels_carry_the_rule_based_reading():
    from appliance.estimators.heuristic import estimate_heuristic
    from appliance.features.spec import RULE_CHANNELS, RULE_SCALARS
    from appliance.synth import generate

    spec = FeatureSpec()
    holes = generate(6, seed=99)
    b = make_batch([h.trace for h in holes], spec)
    for i, h in enumerate(holes):
        rules = estimate_heuristic(h.trace).points
        for ch, sc, name in zip(RULE_CHANNELS, RULE_SCALARS, ("entry", "transition", "exit"),
                                strict=True):
            bump = b.x[i, spec.channels.index(ch)]
            flag = b.scalars[i, spec.scalars.index(sc)]
            if rules.get(name) is None:
                assert flag == 0.0 and not bump.any()
                continue
            assert flag == 1.0
            cells = np.flatnonzero(bump)
            # the triangle's centre of mass is the rule's depth, to a fraction of a cell
            centre = (bump[cells] * cells).sum() / bump[cells].sum() * spec.grid_mm
            assert centre == pytest.approx(rules.get(name), abs=0.01)
            assert len(cells) <= 2 * 0.25 / spec.grid_mm + 1
