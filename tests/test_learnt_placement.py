"""Learnt placement: labels split into anchor crossing + residual, a fine-tune that learns a
rig's offset, and the engine adding the residual where its ramp's crossing is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from appliance.engine.answer import Decoding, HoleOutputs, answer_hole
from appliance.estimators.heuristic import estimate_heuristic, read_trace
from appliance.estimators.placement import anchor_labels, placement_table
from appliance.estimators.snap import crossings
from appliance.points import DepthPoints
from appliance.synth import generate

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch  # noqa: E402

from appliance.engine.ensemble import Engine  # noqa: E402
from appliance.home import baseline_model_dir  # noqa: E402
from appliance.train.data import TrainHole  # noqa: E402
from appliance.train.model import ModelConfig, build_model  # noqa: E402
from appliance.train.train import TrainOptions, train_ensemble  # noqa: E402

EXIT_OFFSET = 0.4
ENTRY_OFFSET = -0.3


def shifted(label: DepthPoints) -> DepthPoints:
    """A rig whose operators confirm the entry 0.3 mm early and the exit 0.4 mm deep."""
    return DepthPoints(None if label.entry_mm is None else label.entry_mm + ENTRY_OFFSET,
                       label.transition_mm,
                       None if label.exit_mm is None else label.exit_mm + EXIT_OFFSET)


@pytest.fixture(scope="module")
def synth_holes():
    return generate(40, seed=424242)


def test_labels_split_into_crossing_and_the_rigs_offset(synth_holes) -> None:
    readings = [read_trace(h.trace) for h in synth_holes]
    labels = [shifted(h.truth) for h in synth_holes]
    anchored = anchor_labels(labels, readings)
    assert abs(anchored.rig_offset_mm["exit"] - EXIT_OFFSET) < 0.05
    assert abs(anchored.rig_offset_mm["entry"] - ENTRY_OFFSET) < 0.05
    assert abs(anchored.rig_offset_mm["transition"]) < 0.05
    close = []
    for i, h in enumerate(synth_holes):
        if h.truth.exit_mm is None or not anchored.on_ramp[i, 2]:
            continue
        # the anchor is a crossing of the trace, the residual the practice (a two-stage
        # exit's noisy crossing may sit a little off the noiseless truth's)
        assert anchored.anchor_mm[i, 2] in crossings(readings[i], "exit")
        close.append(abs(anchored.residual_mm[i, 2] - EXIT_OFFSET) < 0.15)
    assert np.mean(close) >= 0.85, close
    summary = anchored.summary()
    assert summary["exit"]["n_on_ramp"] >= 0.8 * summary["exit"]["n_labels"]
    assert "+0.4" in placement_table({"mode": "learn", "labels": summary, "model": {}})


def test_convention_labels_are_their_own_anchors(synth_holes) -> None:
    readings = [read_trace(h.trace) for h in synth_holes]
    labels = [h.truth for h in synth_holes]
    anchored = anchor_labels(labels, readings, learn=False)
    present = np.isfinite(anchored.anchor_mm)
    assert np.all(anchored.residual_mm[present] == 0.0)
    assert not anchored.on_ramp.any()


def test_engine_adds_the_residual_at_the_snapped_crossing(synth_holes) -> None:
    hole = next(h for h in synth_holes if h.truth.exit_mm is not None
                and h.truth.entry_mm is not None)
    reading = read_trace(hole.trace)
    length, grid = 1088, 0.05
    offsets = np.zeros((3, 3, length))
    offsets[:, 2, :] = EXIT_OFFSET
    truth = hole.truth
    # members locate the truth 0.1 mm off: the snap puts them back on the crossing
    depths = np.array([[truth.entry_mm + 0.1, 0.0, truth.exit_mm - 0.1]] * 3)
    probs = np.array([[0.99, 0.01, 0.99]] * 3)
    out = HoleOutputs(depths, probs, np.full((3, 3), 0.9), offsets, 0.0, grid)
    rules = estimate_heuristic(hole.trace, reading).points
    plain = answer_hole(out, reading, rules, Decoding(place_on_ramps=True))
    learnt = answer_hole(out, reading, rules, Decoding(place_on_ramps=True, residual=True))
    assert plain.exit_mm == pytest.approx(truth.exit_mm, abs=0.05)
    assert learnt.exit_mm == pytest.approx(plain.exit_mm + EXIT_OFFSET, abs=1e-3)
    assert learnt.entry_mm == pytest.approx(plain.entry_mm, abs=1e-9)  # its map is 0
    assert learnt.transition_mm is None
    assert 0.0 <= learnt.review_priority <= 1.0


def test_two_points_on_one_crossing_drop_the_transition(synth_holes) -> None:
    hole = next(h for h in synth_holes if h.truth.entry_mm is not None
                and h.truth.exit_mm is not None)
    reading = read_trace(hole.trace)
    t = hole.truth
    depths = np.array([[t.entry_mm, t.entry_mm + 0.05, t.exit_mm]] * 3)
    out = HoleOutputs(depths, np.full((3, 3), 0.99), np.full((3, 3), 0.9), None, 0.0, 0.05)
    est = answer_hole(out, reading, None, Decoding(place_on_ramps=True))
    assert est.transition_mm is None and est.entry_mm is not None
    assert est.note == "points out of order: transition dropped"
    assert est.review_priority > 0.5  # the hole is suspect all the same


def test_a_parent_from_before_learnt_placement_places_on_the_convention() -> None:
    model = build_model("cnn", ModelConfig(length=256))
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("head.place.")}
    fresh = build_model("cnn", ModelConfig(length=256))
    fresh.load_parent_state(state)
    x, s = torch.randn(2, fresh.cfg.in_channels, 256), torch.randn(2, fresh.cfg.n_scalars)
    assert torch.count_nonzero(fresh(x, s)[2]) == 0
    with pytest.raises(ValueError, match="missing"):
        fresh.load_parent_state({k: v for k, v in state.items() if "refine" not in k})


@pytest.mark.slow
def test_a_finetune_learns_the_rigs_offset(synth_holes, tmp_path: Path) -> None:
    """From the shipped baseline, on 28 holes of a rig that confirms entries 0.3 mm early and
    exits 0.4 mm deep: the candidate, served by onnxruntime, places the other holes' points
    there (the baseline cannot: its points sit on the crossings)."""
    torch.set_num_threads(1)
    train = [TrainHole(h.trace, shifted(h.truth), f"g{i}", f"h{i}")
             for i, h in enumerate(synth_holes[:28])]
    test = synth_holes[28:]
    opts = TrainOptions(folds=2, epochs=3, seed=3, augment=0, probe_size=2)
    manifest = train_ensemble(train, tmp_path / "cand", opts, parent_dir=baseline_model_dir())
    learnt = manifest["placement"]["model"]
    assert learnt["exit"]["median_residual_mm"] == pytest.approx(EXIT_OFFSET, abs=0.08)
    assert learnt["entry"]["median_residual_mm"] == pytest.approx(ENTRY_OFFSET, abs=0.08)
    assert manifest["decode"] == {"place_on_ramps": True, "residual": True}
    engine = Engine.from_dir(tmp_path / "cand")
    base = Engine.from_dir(baseline_model_dir())
    errors, base_errors = [], []
    for h, est, b in zip(test, engine.estimate_many([h.trace for h in test]),
                         base.estimate_many([h.trace for h in test]), strict=True):
        want = shifted(h.truth)
        for name in ("entry", "exit"):
            v, w, bv = est.points.get(name), want.get(name), b.points.get(name)
            if v is not None and w is not None and bv is not None and abs(bv - h.truth.get(
                    name)) < 0.1:  # holes whose ramp the baseline already finds
                errors.append(abs(v - w))
                base_errors.append(abs(bv - w))
    assert len(errors) >= 10
    assert np.median(errors) < 0.1, np.median(errors)
    assert np.median(base_errors) > 0.25  # what the rig's operators would correct forever
    assert all(0.0 <= e.review_priority <= 1.0 for e in engine.estimate_many(
        [h.trace for h in test]))
