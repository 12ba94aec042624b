"""Predictions, models and activations, jobs, audit, quarantine and API keys."""

from __future__ import annotations

import pytest
from test_store_support import make_trace

from appliance.errors import NotFoundError, ValidationError
from appliance.points import DepthEstimate
from appliance.records import GateOutcome, GateVerdict, JobParams, JobProgress
from appliance.store import Store


@pytest.fixture
def store(home):
    with Store.open(home) as s:
        yield s


def test_predictions_keep_version_and_shadow_flag(store):
    hole_id, _ = store.add_hole(make_trace(1))
    served = DepthEstimate(3.0, 8.0, None, spread_mm={"entry": 0.1}, presence={"exit": 0.2},
                           confidence={"entry": 0.9}, model_version="m1", estimator="ensemble")
    shadow = DepthEstimate(3.1, None, None, model_version="m2", estimator="ensemble")
    first = store.add_prediction(hole_id, served)
    second = store.add_prediction(hole_id, shadow, shadow=True)
    assert second > first
    both = store.predictions(hole_id)
    assert [p.prediction_id for p in both] == [second, first]
    live = store.predictions(hole_id, shadow=False)[0]
    assert live.estimate.model_version == "m1" and live.shadow is False
    assert live.estimate.entry_mm == 3.0 and live.estimate.exit_mm is None
    assert live.estimate.spread_mm == {"entry": 0.1} and live.estimate.presence == {"exit": 0.2}
    assert live.estimate.confidence == {"entry": 0.9} and live.estimate.estimator == "ensemble"
    assert [p.estimate.model_version for p in store.latest_predictions(shadow=True)] == ["m2"]
    with pytest.raises(NotFoundError):
        store.add_prediction("0000000000000000", served)


def test_models_and_activation_log(store):
    store.add_model("base", "/m/base", architecture="patchtsmixer", metrics={"mae": 0.3})
    store.add_model("ft1", "/m/ft1", parent="base", dataset_hash="abc")
    with pytest.raises(ValidationError, match="already registered"):
        store.add_model("base", "/m/other")
    with pytest.raises(ValidationError, match="status"):
        store.add_model("bad", "/m/bad", status="great")
    assert store.active_version() is None
    store.record_activation("base", None, "activate", "setup", "first start")
    report = GateVerdict(version="ft1", passed=True,
                         gates=(GateOutcome(gate="parity", status="pass", details={"n": 3}),))
    store.update_model("ft1", gate_report=report)
    store.record_activation("ft1", "base", "activate", "ann")
    assert store.active_version() == "ft1"
    assert store.get_model("base").status == "retired"
    store.record_activation("base", "ft1", "rollback", "ann", "worse on new holes")
    assert store.active_version() == "base"
    assert [m.status for m in store.list_models()] == ["active", "retired"]
    assert store.get_model("ft1").gate_report == report  # as it was stored, typed
    assert store.get_model("base").metrics == {"mae": 0.3} and store.get_model("base").path \
        == "/m/base"
    log = store.activations()
    assert [(a.version, a.action) for a in log] == [
        ("base", "rollback"), ("ft1", "activate"), ("base", "activate")]
    assert log[0].previous_version == "ft1" and log[0].reason == "worse on new holes"
    with pytest.raises(ValidationError):
        store.record_activation("base", None, "promote", "ann")
    with pytest.raises(NotFoundError):
        store.record_activation("nope", None, "activate", "ann")
    with pytest.raises(ValidationError, match="cannot update"):
        store.update_model("base", version="x")


def test_jobs(store):
    job = store.create_job("train", JobParams(epochs=3))
    store.update_job(job, status="running", progress=JobProgress(epoch=1),
                     started_at="2026-01-01T10:00:00+01:00", log_tail=("one", "two"))
    got = store.get_job(job)
    assert got.status == "running" and got.progress == JobProgress(epoch=1)
    assert got.params == JobParams(epochs=3) and got.started_at == "2026-01-01T09:00:00.000000Z"
    assert got.log_tail == ("one", "two") and got.finished_at is None and not got.ended
    store.create_job("train", job_id="second")
    assert store.get_job("second").params == JobParams() and store.get_job("second").log_tail == ()
    assert [j.job_id for j in store.list_jobs(status="running")] == [job]
    with pytest.raises(NotFoundError):
        store.get_job("missing")
    with pytest.raises(ValidationError):
        store.update_job(job, kind="other")


def test_audit_quarantine_and_keys(store):
    store.audit("ann", "label", "abc", {"label_id": 3})
    store.audit("cli:root", "ingest", None)
    assert [a.action for a in store.audit_log()] == ["ingest", "label"]
    [entry] = store.audit_log(action="label")
    assert (entry.actor, entry.subject, entry.detail) == ("ann", "abc", {"label_id": 3})
    assert entry.at.endswith("Z") and entry.audit_id >= 1
    store.quarantine("/in/bad.xls", "bad.xls (line 3): no Datas section", b"garbage")
    q = store.quarantined()[0]
    assert q["size"] == 7 and len(q["content_hash"]) == 64 and "Datas" in q["error"]
    store.add_api_key("tui", "h1", role="operator")
    assert store.api_key_name("h1") == "tui" and store.api_key_name("h2") is None
    assert [k["name"] for k in store.api_keys()] == ["tui"]
    assert store.delete_api_key("tui") and not store.delete_api_key("tui")
