"""Registry + ServingService on a real DuckDB store and real ONNX folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from model_fixtures import build_model_folder, ramp_trace, rewrite_manifest

from appliance.config import GateConfig
from appliance.engine import ModelFolderError
from appliance.errors import NotFoundError, ValidationError
from appliance.points import DepthPoints
from appliance.registry import GateRefusedError, ServingService
from appliance.store.snapshot import exam_set

GATES = GateConfig(min_exam=3)


@pytest.fixture
def cands(tmp_path: Path) -> Path:
    d = tmp_path / "candidates"
    d.mkdir()
    return d


def open_service(home: Path, baseline: Path | None = None,
                 config: GateConfig = GATES) -> ServingService:
    return ServingService.open(home, config, baseline_dir=baseline or home / "no-baseline")


def add_labelled_holes(service: ServingService, n: int = 30) -> None:
    for i in range(n):
        entry, exit_ = 3.0 + (i % 7) * 0.61, 12.0 + (i % 5) * 1.37
        trace = ramp_trace(entry_mm=entry, exit_mm=exit_, seed=100 + i, source=f"h{i}.xls")
        hole_id, _ = service.store.add_hole(trace, "test")
        service.store.add_label(hole_id, DepthPoints(entry, None, exit_), by="tester")


@pytest.fixture
def served(home: Path, cands: Path) -> ServingService:
    """v1 shipped as the baseline and active, labelled holes in the store."""
    baseline = build_model_folder(cands, "v1")
    service = open_service(home, baseline)
    add_labelled_holes(service)
    assert len(exam_set(service.store)) >= GATES.min_exam
    yield service
    service.close()


def test_first_start_registers_and_activates_the_shipped_baseline(home, cands) -> None:
    baseline = build_model_folder(cands, "base-1")
    service = open_service(home, baseline)
    assert service.active_version == "base-1"
    row = service.show("base-1")
    assert row.status == "active"
    folder = home / "models" / "base-1"
    assert Path(row.path) == folder
    assert not os.access(folder / "members/m0.onnx", os.W_OK) or os.geteuid() == 0
    assert (folder / "members/m0.onnx").stat().st_mode & 0o222 == 0  # sealed read-only
    assert [(a.version, a.actor, a.action) for a in service.history()] == [
        ("base-1", "system", "activate")]
    assert service.estimate(ramp_trace()).model_version == "base-1"
    service.close()
    again = open_service(home, baseline)  # second start: nothing new
    assert again.active_version == "base-1" and len(again.history()) == 1
    again.close()


def test_without_any_model_the_heuristic_serves(home) -> None:
    service = open_service(home)
    est = service.estimate(ramp_trace())
    assert service.active_version is None
    assert est.estimator == "heuristic" and est.note.startswith("no active model")
    service.close()


def test_register_gate_activate_and_roll_back(served: ServingService, cands: Path) -> None:
    row = served.register(build_model_folder(cands, "v2", parent="v1", seed=5))
    assert row.status == "candidate" and row.parent == "v1"
    with pytest.raises(GateRefusedError, match="not run: run `appliance models gate v2`"):
        served.activate("v2")
    report = served.gate("v2")
    assert report.passed, report.describe_blocking()
    assert served.show("v2").gate_passed is True
    done = served.activate("v2", actor="ana", reason="nightly")
    assert done["previous_version"] == "v1" and served.active_version == "v2"
    assert served.show("v1").status == "retired"
    assert served.estimate(ramp_trace()).model_version == "v2"
    back = served.rollback(actor="ana", reason="operator asked")
    assert back["version"] == "v1" and served.active_version == "v1"
    assert served.show("v2").status == "retired"
    by_name = served.rollback("v2", actor="ana")
    assert by_name["version"] == "v2" and served.store.active_version() == "v2"
    log = served.history()
    assert [(a.version, a.previous_version, a.action, a.actor) for a in log][:3] == [
        ("v2", "v1", "rollback", "ana"), ("v1", "v2", "rollback", "ana"),
        ("v2", "v1", "activate", "ana")]
    assert log[2].reason == "nightly"


def test_register_is_idempotent_and_refuses_a_reused_version(served, cands) -> None:
    folder = build_model_folder(cands, "v3")
    first = served.register(folder)
    assert served.register(folder).version == first.version
    other = build_model_folder(cands / "..", "v3", shift=2)
    with pytest.raises(ValidationError, match="already registered with different files"):
        served.register(other)


@pytest.mark.parametrize("how, gate_text", [
    ("missing member", "file is missing"),
    ("tampered file", "does not match"),
    ("corrupted weights", "onnxruntime cannot load"),
    ("wrong input shape", "dimension 1 is 7"),
    ("nan outputs", "non-finite"),
])
def test_broken_candidates_are_rejected_and_the_active_model_stays(
    served, cands, how, gate_text
) -> None:
    if how == "wrong input shape":
        folder = build_model_folder(cands, "bad", n_in=7)
    elif how == "nan outputs":
        folder = build_model_folder(cands, "bad", presence_bias=(float("nan"), -6.0, 6.0))
    else:
        folder = build_model_folder(cands, "bad")
        if how == "missing member":
            (folder / "members/m2.onnx").unlink()
        elif how == "tampered file":
            (folder / "weights/m1.safetensors").write_bytes(b"tampered")
        else:
            (folder / "members/m1.onnx").write_bytes(b"\x08\x07garbage")
            rewrite_manifest(folder)
    row = served.register(folder)
    assert row.status == "rejected" and row.gate_report is not None
    integrity = row.gate_report.gates[0]
    assert integrity.gate == "integrity" and integrity.status == "fail"
    assert gate_text in integrity.summary
    report = served.gate("bad")  # the full run agrees and skips the rest
    assert report.result("integrity").status == "fail" and not report.passed
    with pytest.raises(GateRefusedError, match="integrity gate fail") as refused:
        served.activate("bad")
    assert refused.value.exit_code == 4 and refused.value.gates == ["integrity"]
    assert served.active_version == "v1" and served.store.active_version() == "v1"
    assert served.estimate(ramp_trace()).model_version == "v1"


def test_worse_candidate_is_rejected_by_accuracy_and_force_is_audited(served, cands) -> None:
    served.register(build_model_folder(cands, "worse", shift=8))
    report = served.gate("worse")
    assert report.result("accuracy").status == "fail"
    assert {r.gate for r in report.blocking} == {"accuracy"}
    assert served.show("worse").status == "rejected"
    with pytest.raises(GateRefusedError, match="accuracy gate fail: entry MAE"):
        served.activate("worse")
    with pytest.raises(ValidationError, match="needs a reason"):
        served.activate("worse", force=True)
    assert served.active_version == "v1"
    done = served.activate("worse", actor="ana", force=True, reason="field test on rig 3")
    assert done["forced"] and served.active_version == "worse"
    audit = served.store.audit_log(action="model-force-activate")
    detail = audit[0].detail or {}
    assert audit[0].actor == "ana" and detail["reason"] == "field test on rig 3"
    assert "accuracy" in detail["overridden"]


def test_insufficient_evidence_needs_an_override(served, cands) -> None:
    served.gate_config = GateConfig(min_exam=10_000)
    served.register(build_model_folder(cands, "v2", seed=9))
    report = served.gate("v2")
    assert report.result("accuracy").status == "insufficient evidence"
    assert served.show("v2").status == "candidate"  # not rejected: merely unproven
    with pytest.raises(GateRefusedError, match="accuracy gate insufficient evidence"):
        served.activate("v2")
    assert served.activate("v2", force=True, reason="first rig, no exam set yet")["forced"]


def test_a_model_that_fails_to_load_leaves_the_active_one(served, cands) -> None:
    served.register(build_model_folder(cands, "v2"))
    served.gate("v2")
    member = served.registry.folder("v2") / "members/m0.onnx"
    os.chmod(member.parent, 0o755)
    os.chmod(member, 0o644)
    member.write_bytes(b"swapped on disk after gating")
    with pytest.raises(ModelFolderError, match="m0.onnx"):
        served.activate("v2")
    assert served.active_version == "v1" and served.store.active_version() == "v1"
    assert served.history()[0].version == "v1"


def test_rollback_rules(served, cands) -> None:
    with pytest.raises(NotFoundError, match="no earlier active version"):
        served.rollback()
    served.register(build_model_folder(cands, "v2"))
    with pytest.raises(ValidationError, match="never been active"):
        served.rollback("v2")
    with pytest.raises(NotFoundError):
        served.rollback("nope")


def test_auto_rollback_on_degradation(served, cands) -> None:
    served.register(build_model_folder(cands, "same", seed=4))
    served.gate("same")
    served.activate("same")
    kept = served.auto_rollback_check(min_holes=5)
    assert kept["status"] == "ok" and served.active_version == "same"
    served.register(build_model_folder(cands, "drifted", shift=10))
    served.activate("drifted", force=True, reason="try it")
    result = served.auto_rollback_check(min_holes=5, degradation_mm=0.1)
    assert result["status"] == "rolled back" and served.active_version == "same"
    top = served.history()[0]
    assert (top.action, top.actor, top.version) == ("auto-rollback", "system", "same")
    assert "entry MAE" in (top.reason or "")


def test_shadow_scoring_stores_but_does_not_serve(served, cands) -> None:
    served.register(build_model_folder(cands, "v2", shift=3))
    served.set_shadow("v2")
    hole_id = served.store.list_holes(limit=1)[0].hole_id
    served_est = served.predict_and_record(hole_id, served.store.get_trace(hole_id))
    assert served_est.model_version == "v1"
    normal = served.store.predictions(hole_id, shadow=False)
    shadow = served.store.predictions(hole_id, shadow=True)
    assert [p.estimate.model_version for p in normal] == ["v1"]
    assert [p.estimate.model_version for p in shadow] == ["v2"]
    assert shadow[0].estimate.entry_mm != normal[0].estimate.entry_mm
    report = served.shadow_report()
    assert report["holes"] == 1 and report["labelled"] == 1
    assert report["shadow_versions"] == ["v2"]
    assert report["shadow"]["points"]["entry"]["n"] == 1
