"""Models, health, metrics, audit and job-route errors through the test client (real store)."""

from __future__ import annotations

from pathlib import Path

import pytest
from model_fixtures import build_model_folder
from prometheus_client.parser import text_string_to_metric_families
from test_api_support import (  # noqa: F401  (fixture)
    fixture_baseline,
    ingest,
    running_daemon,
    synth_files,
)


@pytest.fixture
def api(tmp_path: Path, fixture_baseline: Path):  # noqa: F811
    with running_daemon(tmp_path / "home", fixture_baseline) as ctx:
        yield ctx


def _candidate(daemon, tmp_path: Path, version: str) -> str:  # noqa: ANN001
    folder = build_model_folder(tmp_path / "cands", version, shift=3, parent="fixture-base")
    row = daemon.models.serving.register(folder, actor="test")
    daemon.models.serving.gate(row.version, actor="test")
    return row.version


def test_models_list_show_active(api) -> None:
    _, client, h = api
    models = client.get("/models", headers=h).json()
    assert [(m["version"], m["active"], m["status"]) for m in models] == [
        ("fixture-base", True, "active")]
    active = client.get("/models/active", headers=h).json()
    assert active["version"] == "fixture-base" and active["architecture"] == "cnn"
    detail = client.get("/models/fixture-base", headers=h).json()
    assert detail["model"]["version"] == "fixture-base"
    assert detail["manifest"]["members"]
    assert client.get("/models/no-such-version", headers=h).status_code == 404
    history = client.get("/models/activations", headers=h).json()
    assert history[0]["version"] == "fixture-base" and history[0]["action"] == "activate"


def test_activation_refused_by_gate_then_forced_then_rolled_back(api, tmp_path: Path) -> None:
    daemon, client, h = api
    version = _candidate(daemon, tmp_path, "fixture-cand")
    shown = client.get(f"/models/{version}", headers=h).json()
    assert shown["model"]["status"] == "candidate"
    gates = {g["gate"]: g["status"] for g in shown["gate_report"]["gates"]}
    assert gates["accuracy"] == "insufficient evidence"  # no exam holes in this home
    refused = client.post(f"/models/{version}/activate", headers=h, json={})
    assert refused.status_code == 409
    assert "accuracy" in refused.json()["detail"]
    assert daemon.models.active_version() == "fixture-base"
    no_reason = client.post(f"/models/{version}/activate", headers=h, json={"force": True})
    assert no_reason.status_code == 422
    # the rule and its words are the registry service's, as for `appliance models activate`
    assert no_reason.json()["detail"] == (f"forcing activation of {version} needs a reason "
                                          "(it is written to the audit log)")
    assert client.post(f"/models/{version}/activate", headers=h,
                       json={"force": True, "reason": ""}).status_code == 400
    forced = client.post(f"/models/{version}/activate", headers=h,
                         json={"force": True, "reason": "operator checked 5 holes"})
    assert forced.status_code == 200, forced.text
    assert forced.json()["version"] == version and forced.json()["active"] is True
    assert client.get("/models/active", headers=h).json()["version"] == version
    actions = [a["action"] for a in client.get("/audit", headers=h).json()]
    assert "model-force-activate" in actions and "model-activate" in actions
    back = client.post("/models/rollback", headers=h, json={"reason": "test"})
    assert back.status_code == 200, back.text
    assert back.json()["version"] == "fixture-base"
    assert daemon.models.active_version() == "fixture-base"
    history = client.get("/models/activations", headers=h).json()
    assert [a["action"] for a in history[:2]] == ["rollback", "activate"]
    rolled = client.get("/audit", headers=h, params={"limit": 1}).json()[0]
    assert (rolled["action"], rolled["actor"], rolled["subject"]) == (
        "model-rollback", "tester", "fixture-base")
    assert client.post("/models/no-such/activate", headers=h, json={}).status_code == 404
    assert client.post("/models/rollback", headers=h,
                       json={"version": "fixture-base"}).status_code == 422  # already active
    assert client.post("/models/rollback", headers=h,
                       json={"unknown": 1}).status_code == 400


def test_rollback_with_no_history_is_refused(api) -> None:
    daemon, client, h = api
    r = client.post("/models/rollback", headers=h, json={})
    assert r.status_code == 404
    assert daemon.models.active_version() == "fixture-base"


def test_health_metrics_audit(api) -> None:
    _, client, h = api
    ingest(client, h, synth_files(2, seed=31))
    # open, for probes: up or not, version, active model, and nothing of the box
    probe = client.get("/health")
    assert probe.status_code == 200
    assert probe.json() == {"status": "ok", "version": probe.json()["version"],
                            "active_model": "fixture-base"}
    assert client.get("/health/details").status_code == 401
    health = client.get("/health/details", headers=h).json()
    assert health["status"] == "ok"
    assert health["store"] == {"ok": True, "path": "appliance.duckdb", "holes": 2,
                               "labelled_holes": 0}  # the path relative to the home
    assert health["active_model"] == "fixture-base" and health["running_job"] is None
    assert health["disk"]["free_bytes"] > 0 and "path" not in health["disk"]
    # the exposition read back with prometheus-client's own parser (tests/test_metrics.py
    # covers the rest)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(
                   client.get("/metrics", headers=h).text)
               for s in family.samples}
    assert samples[("appliance_active_model_info",
                    (("estimator", "ensemble"), ("version", "fixture-base")))] == 1
    assert samples[("appliance_estimates_total", (("estimator", "ensemble"),))] == 2
    assert samples[("appliance_requests_total",
                    (("method", "POST"), ("route", "/holes"), ("status", "201")))] == 2
    assert samples[("appliance_holes", ())] == 2
    assert samples[("appliance_request_duration_seconds_count", (("route", "/holes"),))] == 2
    audit = client.get("/audit", headers=h, params={"limit": 1}).json()
    assert len(audit) == 1
    assert client.get("/audit", headers=h, params={"since": "2999-01-01T00:00:00"}).json() == []


def test_job_routes_errors_without_training(api) -> None:
    _, client, h = api
    r = client.post("/jobs/fine-tune", headers=h, json={"folds": 2, "epochs": 1})
    assert r.status_code == 422 and "nothing to train on" in r.json()["detail"]
    assert client.post("/jobs/fine-tune", headers=h, json={"folds": 1}).status_code == 400
    assert client.post("/jobs/fine-tune", headers=h,
                       json={"architecture": "gpt"}).status_code == 400
    assert client.get("/jobs", headers=h).json() == []
    assert client.get("/jobs/nope", headers=h).status_code == 404
    assert client.delete("/jobs/nope", headers=h).status_code == 404
    assert client.get("/jobs/nope/events", headers=h).status_code == 404
    nightly = client.post("/jobs/nightly", headers=h, json={}).json()
    assert nightly["started"] is False and nightly["new_labels"] == 0
    assert "20 needed" in nightly["reason"]


def test_shadow_scoring_runs_a_candidate_unserved(api, tmp_path: Path) -> None:
    daemon, client, h = api
    version = _candidate(daemon, tmp_path, "fixture-shadow")
    assert client.get("/models/shadow", headers=h).json()["version"] is None
    assert client.put("/models/shadow", json={"version": "nope"}, headers=h).status_code == 404
    started = client.put("/models/shadow", json={"version": version}, headers=h)
    assert started.status_code == 200 and started.json()["version"] == version
    files = synth_files(3, seed=91)
    ids = ingest(client, h, files)
    for hole_id, (_, _, truth) in zip(ids, files, strict=True):
        served = client.get(f"/holes/{hole_id}/estimate", headers=h).json()
        assert served["model_version"] == "fixture-base"  # the shadow never answers
        client.put(f"/holes/{hole_id}/label", headers=h,
                   json={**truth.as_dict(), "by": "tester"})
    report = client.get("/models/shadow", headers=h).json()
    assert report["holes"] == 3 and report["shadow_versions"] == [version]
    assert report["labelled"] == 3 and report["shadow"] and report["served"]
    stopped = client.put("/models/shadow", json={"version": None}, headers=h)
    assert stopped.json()["version"] is None
    assert client.put("/models/shadow", json={"version": version}).status_code == 401
