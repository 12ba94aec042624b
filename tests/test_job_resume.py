"""What a job leaves when the daemon stops under it: it resumes at the next start from its last
finished fold; a candidate that a failed job registered is set aside, then removed."""

from __future__ import annotations

from pathlib import Path

import pytest
from litestar.testing import TestClient
from model_fixtures import build_model_folder
from test_api_support import running_daemon, trained_baseline  # noqa: F401  (fixture)
from test_jobs import FINE_TUNE, _labelled_home, _wait

from api.app import create_app
from appliance.config import TrainConfig, load_config
from appliance.errors import ValidationError
from appliance.jobs.events import parse_event
from appliance.records import JobParams, JobProgress
from appliance.services.daemon import Daemon


def test_a_job_stopped_with_the_daemon_resumes_from_its_finished_fold(
        tmp_path: Path, trained_baseline: Path) -> None:  # noqa: F811
    home = tmp_path / "home"
    with running_daemon(home, trained_baseline) as (_, client, h):
        _labelled_home(client, h, n=8, seed=56)
        job = client.post("/jobs/fine-tune", headers=h, json={**FINE_TUNE, "epochs": 2}).json()
        _wait(client, h, job["id"], lambda j: (j["progress"].get("fraction") or 0) >= 0.5)
    # the daemon stopped while the second fold trained: the job waits, with its folder
    work = home / "jobs" / job["id"]
    assert (work / "dataset" / "manifest.json").is_file()
    assert (work / ".candidate.work" / "fold0.safetensors").is_file()
    again = Daemon.open(load_config(home), schedule=False)
    try:
        running = again.jobs.running()
        assert running is not None and running.job_id == job["id"]
        with TestClient(create_app(again)) as client:
            busy = client.post("/jobs/fine-tune", headers=h, json=FINE_TUNE)
            assert busy.status_code == 409 and job["id"] in busy.text
            done = _wait(client, h, job["id"],
                         lambda j: j["status"] not in ("queued", "running"))
        assert done["status"] == "succeeded", done
        assert done["progress"]["resumed_at"] and done["candidate_version"]
        after = (work / "train.log").read_text().split("resumed at", 1)[1]
        events = [parse_event(line) for line in after.splitlines()]
        folds = [(e["fold"], e["resumed"]) for e in events if e and e["event"] == "fold_done"]
        assert folds[0] == (0, True)  # reloaded from its checkpoint, never trained again
        assert all(e["fold"] != 0 for e in events if e and e["event"] == "epoch")
        assert sorted(p.name for p in work.iterdir()) == ["train.log"]
    finally:
        again.close()


def test_a_failed_jobs_candidate_is_set_aside_then_removed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    shipped = build_model_folder(tmp_path / "shipped", "fixture-base")
    daemon = Daemon.open(load_config(home), schedule=False, baseline_dir=shipped)
    cand = build_model_folder(tmp_path / "made", "cand-half-gated", shift=1)
    daemon.models.serving.register(cand, actor="job j1")
    # the daemon died gating it, and the job cannot resume (its snapshot is gone)
    daemon.store.create_job("fine-tune", JobParams(folds=2), status="running", job_id="j1")
    daemon.store.update_job("j1", candidate_version="cand-half-gated",
                            progress=JobProgress(parent="fixture-base"))
    # a failed job that named the active model: never touched
    daemon.store.create_job("nightly", JobParams(), status="failed", job_id="j0")
    daemon.store.update_job("j0", candidate_version="fixture-base")
    daemon.store.close()

    kept = Daemon.open(load_config(home), schedule=False)
    try:
        assert "cannot resume" in (kept.job("j1").error or "")
        row = kept.store.get_model("cand-half-gated")
        assert row.status == "rejected" and row.gate_report and row.gate_report.rejected
        assert "job j1" in row.gate_report.rejected.why
        assert (home / "models" / "cand-half-gated" / "manifest.json").is_file()  # 24 h kept
    finally:
        kept.close()

    gone = Daemon.open(load_config(home, train=TrainConfig(failed_candidate_keep_h=0)),
                       schedule=False)
    try:
        assert not (home / "models" / "cand-half-gated").exists()
        row = gone.store.get_model("cand-half-gated")
        assert row.status == "rejected" and row.gate_report and row.gate_report.removed
        assert "job j1" in row.gate_report.removed.why
        assert [a.subject for a in gone.store.audit_log()
                if a.action == "model-remove"] == ["cand-half-gated"]
        with pytest.raises(ValidationError, match="was removed"):
            gone.models.activate("cand-half-gated", "tester", force=True, reason="try")
        assert gone.models.active_version() == "fixture-base"
        assert (home / "models" / "fixture-base" / "manifest.json").is_file()
    finally:
        gone.close()
