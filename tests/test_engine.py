"""The ONNX ensemble engine and the model holder, on real onnxruntime sessions."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from model_fixtures import build_model_folder, ramp_trace, rewrite_manifest

from appliance.engine import Engine, ModelFolderError, ModelHolder
from appliance.features import FeatureSpec


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_model_folder(root, "good", n_members=3)
    build_model_folder(root, "spread", n_members=3, shift=[-12, 0, 12])
    build_model_folder(root, "nan", n_members=2, presence_bias=(float("nan"), -6.0, 6.0))
    return root


def test_estimates_points_of_a_clean_hole(models: Path) -> None:
    engine = Engine.from_dir(models / "good")
    assert engine.version == "good" and engine.n_members == 3
    est = engine.estimate(ramp_trace(entry_mm=4.2, exit_mm=17.7, seed=3))
    assert est.estimator == "ensemble" and est.model_version == "good" and est.note is None
    assert est.entry_mm == pytest.approx(4.2, abs=0.06)
    assert est.exit_mm == pytest.approx(17.7, abs=0.06)
    assert est.transition_mm is None and est.spread_mm["transition"] is None
    assert est.presence["transition"] < 0.01 < 0.99 < est.presence["entry"]
    # identical members agree exactly
    assert est.spread_mm["entry"] == 0.0 and est.spread_mm["exit"] == 0.0


def test_median_and_spread_over_members(models: Path) -> None:
    good = Engine.from_dir(models / "good").estimate(ramp_trace(seed=5))
    spread = Engine.from_dir(models / "spread").estimate(ramp_trace(seed=5))
    # members read 12 cells (0.6 mm) shallower / as is / 12 deeper: the median is the middle
    # one, the range 24 cells of the 0.05 mm grid, and two of three are > 0.5 mm off it
    assert spread.entry_mm == pytest.approx(good.entry_mm, abs=1e-6)
    assert spread.spread_mm["entry"] == pytest.approx(24 * 0.05, abs=0.01)
    assert spread.spread_mm["exit"] == pytest.approx(24 * 0.05, abs=0.01)
    assert spread.confidence["entry"] == pytest.approx(good.confidence["entry"] / 3)


def test_batch_equals_one_by_one(models: Path) -> None:
    engine = Engine.from_dir(models / "spread")
    traces = [ramp_trace(entry_mm=3 + i * 0.37, exit_mm=15 + i * 0.5, seed=i) for i in range(5)]
    batch = engine.estimate_many(traces, batch_size=2)
    single = [engine.estimate(t) for t in traces]
    for b, s in zip(batch, single, strict=True):
        assert b.points == s.points and b.spread_mm == s.spread_mm


def test_non_finite_outputs_fall_back_to_the_heuristic(models: Path) -> None:
    engine = Engine.from_dir(models / "nan")
    est = engine.estimate(ramp_trace(entry_mm=5.0, exit_mm=20.0))
    assert est.estimator == "heuristic" and est.model_version is None
    assert "non-finite" in est.note and "nan" in est.note


def test_one_bad_hole_does_not_cost_the_batch_the_model(models: Path) -> None:
    engine = Engine.from_dir(models / "good")
    good = ramp_trace(seed=1)
    bad_torque = good.torque_a.copy()
    bad_torque[100] = np.nan
    bad = replace(good, meta=replace(good.meta, source="broken.xls"), torque_a=bad_torque)
    out = engine.estimate_many([good, bad, good])
    assert [e.estimator for e in out] == ["ensemble", "heuristic", "ensemble"]
    assert "broken.xls" in out[1].note and "non-finite" in out[1].note


def test_wrong_feature_spec_or_tampered_member_is_refused_on_load(tmp_path: Path) -> None:
    folder = build_model_folder(tmp_path, "t", n_members=2)
    (folder / "members/m1.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(ModelFolderError, match=r"m1\.onnx.*sha256"):
        Engine.from_dir(folder)
    rewrite_manifest(folder)  # hashes now match the garbage: onnxruntime must refuse it
    with pytest.raises(ModelFolderError, match=r"m1\.onnx: onnxruntime cannot load"):
        Engine.from_dir(folder)
    spec = FeatureSpec(length=256)
    other = build_model_folder(tmp_path, "short", n_members=1, spec=spec)
    manifest = rewrite_manifest(other)
    manifest["feature_spec"]["length"] = 512  # members take 256 positions
    rewrite_manifest(other, manifest)
    with pytest.raises(ModelFolderError, match=rf"\[1, {spec.n_channels}, 512\]"):
        Engine.from_dir(other)


def test_holder_swaps_atomically_and_requests_keep_their_model(models: Path) -> None:
    a = Engine.from_dir(models / "good")
    b = Engine.from_dir(models / "spread")
    holder = ModelHolder()
    assert holder.version is None
    trace = ramp_trace(seed=2)
    assert holder.estimate(trace).estimator == "heuristic"
    holder.swap(a)
    started_on = holder.current()  # a request reads the holder once...
    holder.swap(b)  # ...a swap happens while it runs...
    assert started_on.estimate(trace).model_version == "good"  # ...it finishes on its model
    assert holder.estimate(trace).model_version == "spread"
    old = holder.swap(None)
    assert old.version == "spread" and holder.estimate(trace).note.startswith("no active model")


def test_engine_is_shared_safely_between_threads(models: Path) -> None:
    engine = Engine.from_dir(models / "spread")
    traces = [ramp_trace(entry_mm=3 + i * 0.2, seed=i) for i in range(4)]
    expected = [engine.estimate(t).points for t in traces]
    errors: list[BaseException] = []
    results: list[bool] = []

    def work() -> None:
        try:
            for _ in range(5):
                results.append([engine.estimate(t).points for t in traces] == expected)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 20 and all(results)


def test_models_that_say_so_have_their_points_placed_on_the_ramps(tmp_path: Path) -> None:
    # Members biased 0.3 mm deeper: served as they are, unless the manifest asks for the
    # points to be placed on their ramps' half-height crossings.
    trace = ramp_trace(entry_mm=6.0, exit_mm=18.0, seed=11)
    raw = Engine.from_dir(build_model_folder(tmp_path, "raw", shift=6)).estimate(trace)
    placed = Engine.from_dir(build_model_folder(tmp_path, "placed", shift=6,
                                                place_on_ramps=True)).estimate(trace)
    assert abs(raw.entry_mm - 6.0) == pytest.approx(0.3, abs=0.06)
    assert abs(raw.exit_mm - 18.0) == pytest.approx(0.3, abs=0.06)
    assert placed.entry_mm == pytest.approx(6.0, abs=0.02)
    assert placed.exit_mm == pytest.approx(18.0, abs=0.02)
    assert placed.spread_mm == raw.spread_mm and placed.presence == raw.presence
    with pytest.raises(ModelFolderError, match="'decode' must be an object"):
        folder = build_model_folder(tmp_path, "bad")
        manifest = rewrite_manifest(folder)
        manifest["decode"] = {"place_on_ramps": "yes"}
        rewrite_manifest(folder, manifest)
        Engine.from_dir(folder)
