"""Each promotion gate on real ONNX folders: broken candidates are caught by the right gate."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from model_fixtures import build_model_folder, ramp_trace, rewrite_manifest

from appliance.config import GateConfig
from appliance.engine import Engine, ModelRunError
from appliance.gates import (
    FAIL,
    INSUFFICIENT,
    PASS,
    SKIPPED,
    check_accuracy,
    check_latency,
    run_gates,
)
from appliance.points import DepthPoints
from appliance.trace import Trace


@dataclass
class Hole:
    trace: Trace
    label: DepthPoints


def exam_holes(n: int) -> list[Hole]:
    rng = np.random.default_rng(42)
    out = []
    for i in range(n):
        entry = float(rng.uniform(2.0, 8.0))
        exit_ = float(entry + rng.uniform(6.0, 15.0))
        out.append(Hole(ramp_trace(entry_mm=entry, exit_mm=exit_, seed=i, end_mm=exit_ + 4),
                        DepthPoints(entry, None, exit_)))
    return out


@pytest.fixture(scope="module")
def exam() -> list[Hole]:
    return exam_holes(24)


@pytest.fixture(scope="module")
def active(tmp_path_factory) -> Engine:
    return Engine.from_dir(build_model_folder(tmp_path_factory.mktemp("active"), "v1"))


def _statuses(report) -> dict[str, str]:
    return {r.gate: r.status for r in report.results}


def test_a_sound_candidate_passes_every_gate(tmp_path: Path, active: Engine, exam) -> None:
    folder = build_model_folder(tmp_path, "v2", parent="v1", seed=7)
    report, engine = run_gates(folder, active, exam, GateConfig())
    assert report.passed, report.as_dict()
    assert _statuses(report) == {"integrity": PASS, "parity": PASS, "accuracy": PASS,
                                 "latency": PASS}
    assert engine is not None and engine.version == "v2"
    assert report.compared_with == "v1"
    json.dumps(report.as_dict())  # stored as JSON with the version


def _broken(tmp_path: Path, how: str) -> Path:
    if how == "wrong input shape":
        folder = build_model_folder(tmp_path, "bad", n_in=7)  # 7 channels, the spec has 9
        return folder
    if how == "nan outputs":
        return build_model_folder(tmp_path, "bad", presence_bias=(np.nan, -6.0, 6.0))
    folder = build_model_folder(tmp_path, "bad")
    if how == "missing member":
        (folder / "members/m1.onnx").unlink()
    elif how == "tampered file":
        data = bytearray((folder / "members/m2.onnx").read_bytes())
        data[-5] ^= 0x01
        (folder / "members/m2.onnx").write_bytes(bytes(data))
    elif how == "unlisted file":
        (folder / "members/m9.onnx").write_bytes((folder / "members/m0.onnx").read_bytes())
    elif how == "corrupted weights":
        data = (folder / "members/m0.onnx").read_bytes()
        (folder / "members/m0.onnx").write_bytes(data[: len(data) // 2])
        rewrite_manifest(folder)  # hashes match the damage: only loading can tell
    elif how == "residual without offset":
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["decode"] = {"place_on_ramps": True, "residual": True}
        rewrite_manifest(folder, manifest)
    elif how == "damaged review calibration":
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["review"] = {"features": ["spread"], "coef": [1.0]}
        rewrite_manifest(folder, manifest)
    return folder


@pytest.mark.parametrize("how, expected", [
    ("missing member", r"members/m1\.onnx: file is missing"),
    ("tampered file", r"members/m2\.onnx: sha256 .* does not match"),
    ("corrupted weights", r"members/m0\.onnx: onnxruntime cannot load it"),
    ("unlisted file", r"members/m9\.onnx: file is not listed in the manifest"),
    ("wrong input shape", r"input 'x' dimension 1 is 7, the feature spec needs 9"),
    ("nan outputs", r"non-finite output value"),
    ("residual without offset", r"decode\.residual needs the 'offset' output"),
    ("damaged review calibration", r"'review' is not a usable calibration"),
])
def test_broken_candidates_fail_integrity(tmp_path, active, exam, how, expected) -> None:
    report, engine = run_gates(_broken(tmp_path, how), active, exam, GateConfig())
    integrity = report.result("integrity")
    assert integrity.status == FAIL and engine is None
    assert any(re.search(expected, p) for p in integrity.details["problems"]), \
        integrity.details["problems"]
    assert re.search(expected, integrity.summary)
    assert {r.gate: r.status for r in report.results[1:]} == {
        "parity": SKIPPED, "accuracy": SKIPPED, "latency": SKIPPED}
    assert not report.passed and report.rejected
    assert "integrity gate fail" in report.describe_blocking()


def test_parity_catches_onnx_that_disagrees_with_torch(tmp_path, active, exam) -> None:
    folder = build_model_folder(tmp_path, "drift")
    with np.load(folder / "probe.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["scores_1"] = arrays["scores_1"] + np.float32(5e-4)  # torch said slightly otherwise
    with open(folder / "probe.npz", "wb") as fh:
        np.savez(fh, **arrays)
    rewrite_manifest(folder)
    report, _ = run_gates(folder, active, exam, GateConfig())
    parity = report.result("parity")
    assert report.result("integrity").status == PASS
    assert parity.status == FAIL and "members/m1.onnx: max |onnx - torch| = 0.0005" in \
        parity.summary
    diffs = {m["member"]: m["max_abs_diff_scores"] for m in parity.details["members"]}
    assert diffs["members/m0.onnx"] <= 1e-4 < diffs["members/m1.onnx"]


def test_parity_compares_decoded_points_in_mm(tmp_path, active, exam) -> None:
    folder = build_model_folder(tmp_path, "pts")
    with np.load(folder / "probe.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["points_0"] = arrays["points_0"] + 0.05  # trainer decoded 0.05 mm elsewhere
    with open(folder / "probe.npz", "wb") as fh:
        np.savez(fh, **arrays)
    rewrite_manifest(folder)
    parity = run_gates(folder, active, exam, GateConfig())[0].result("parity")
    assert parity.status == FAIL and "decoded points differ" in parity.summary


def test_accuracy_rejects_a_worse_candidate_and_passes_an_equal_one(
    tmp_path, active, exam
) -> None:
    same = Engine.from_dir(build_model_folder(tmp_path, "same", seed=3))
    better_or_equal = check_accuracy(same, active, exam)
    assert better_or_equal.status == PASS, better_or_equal.summary
    pts = better_or_equal.details["candidate"]["points"]
    assert pts["entry"]["n"] == 24 and pts["entry"]["mae_mm"] < 0.1
    worse = Engine.from_dir(build_model_folder(tmp_path, "worse", shift=6))  # 0.3 mm off
    result = check_accuracy(worse, active, exam)
    assert result.status == FAIL
    assert "entry MAE" in result.summary and "exit MAE" in result.summary
    assert result.details["candidate"]["points"]["entry"]["mae_mm"] > \
        result.details["reference_scores"]["points"]["entry"]["mae_mm"] + 0.02


def test_accuracy_rejects_worse_presence(tmp_path, active, exam) -> None:
    # places a transition in single-layer holes: positions unchanged, presence worse
    phantom = Engine.from_dir(build_model_folder(tmp_path, "ph", presence_bias=(6.0, 6.0, 6.0)))
    result = check_accuracy(phantom, active, exam)
    assert result.status == FAIL and "presence accuracy" in result.summary


def test_accuracy_needs_enough_exam_holes(active, exam) -> None:
    result = check_accuracy(active, active, exam[:5], min_exam=20)
    assert result.status == INSUFFICIENT
    assert "only 5 exam hole(s), 20 needed" in result.summary


def test_latency_compares_in_the_same_run(tmp_path, active, exam) -> None:
    slow = Engine.from_dir(build_model_folder(tmp_path, "slow", slow=30))
    traces = [h.trace for h in exam[:4]]
    result = check_latency(slow, active, traces, factor=1.5)
    assert result.status == FAIL, result.summary
    assert result.details["ratio"] > 1.5
    assert result.details["candidate_ms"] > result.details["reference_ms"]
    assert check_latency(slow, None, traces).status == SKIPPED


def test_accuracy_does_not_credit_the_candidate_with_fallback_answers(
    tmp_path, active, exam
) -> None:
    failing = Engine.from_dir(build_model_folder(tmp_path, "fails"))

    def broken(traces):  # as if every exam hole made the candidate fail
        return [ModelRunError("model fails gave non-finite outputs") for _ in traces]

    failing.predict = broken
    result = check_accuracy(failing, None, exam)  # reference: the rule-based estimator
    assert result.status == FAIL
    assert "could not answer 24 of 24 exam holes" in result.summary
