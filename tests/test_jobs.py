"""Training jobs: a real `appliance train` child from a really trained tiny parent."""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest
from test_api_support import (  # noqa: F401  (fixture)
    ingest,
    running_daemon,
    synth_files,
    trained_baseline,
)

from appliance.config import TrainConfig, load_config
from appliance.jobs.events import fold_progress, parse_event
from appliance.jobs.schedule import next_run
from appliance.records import JobParams, JobProgress
from appliance.services.daemon import Daemon

FINE_TUNE = {"folds": 2, "epochs": 1, "architecture": "cnn"}


def _labelled_home(client, h, n: int = 12, seed: int = 51) -> list[str]:  # noqa: ANN001
    files = synth_files(n, seed)
    ids = ingest(client, h, files)
    for hid, (_, _, truth) in zip(ids, files, strict=True):
        r = client.put(f"/holes/{hid}/label", headers=h, json={**truth.as_dict(), "by": "ann"})
        assert r.status_code == 200, r.text
    return ids


def _wait(client, h, job_id: str, until, timeout: float = 180) -> dict:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}", headers=h).json()
        if until(job):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never reached the state: {job}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_fine_tune_job_runs_to_a_gated_candidate(
        tmp_path: Path, trained_baseline: Path) -> None:  # noqa: F811
    with running_daemon(tmp_path / "home", trained_baseline) as (daemon, client, h):
        _labelled_home(client, h)
        r = client.post("/jobs/fine-tune", headers=h, json=FINE_TUNE)
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["status"] in ("queued", "running") and job["kind"] == "fine-tune"
        second = client.post("/jobs/fine-tune", headers=h, json=FINE_TUNE)
        assert second.status_code == 409 and job["id"] in second.json()["detail"]
        assert client.get("/health/details", headers=h).json()["running_job"]["id"] == job["id"]
        done = _wait(client, h, job["id"], lambda j: j["status"] not in ("queued", "running"))
        assert done["status"] == "succeeded", done
        assert done["progress"]["fraction"] == 1.0
        assert done["progress"]["parent"] == "tiny-base"
        assert done["progress"]["dataset_holes"] >= 1
        version = done["candidate_version"]
        model = client.get(f"/models/{version}", headers=h).json()
        assert model["model"]["parent"] == "tiny-base"
        assert {g["gate"] for g in model["gate_report"]["gates"]} >= {"integrity", "parity",
                                                                       "accuracy"}
        assert done["progress"]["gate_passed"] == model["model"]["gate_passed"]
        # a manual job never promotes by itself
        assert done["progress"]["activated"] is False
        assert daemon.models.active_version() == "tiny-base"
        events = client.get(f"/jobs/{job['id']}/events", headers=h)
        assert events.status_code == 200
        assert "event: end" in events.text and '"status":"succeeded"' in events.text
        assert 'appliance_jobs_total{outcome="succeeded"} 1' in client.get(
            "/metrics", headers=h).text
        assert (daemon.config.home / "jobs" / job["id"] / "train.log").is_file()
        assert not (daemon.config.home / "jobs" / job["id"] / "dataset").exists()


def test_killed_child_fails_the_job_and_leaves_models_alone(
        tmp_path: Path, trained_baseline: Path) -> None:  # noqa: F811
    with running_daemon(tmp_path / "home", trained_baseline) as (daemon, client, h):
        _labelled_home(client, h, n=8, seed=52)
        before = client.get("/models", headers=h).json()
        job = client.post("/jobs/fine-tune", headers=h, json=FINE_TUNE).json()
        running = _wait(client, h, job["id"], lambda j: (j["progress"] or {}).get("pid"))
        os.kill(running["progress"]["pid"], signal.SIGKILL)
        failed = _wait(client, h, job["id"], lambda j: j["status"] != "running")
        assert failed["status"] == "failed"
        assert "killed by SIGKILL" in failed["error"]
        assert failed["candidate_version"] is None
        # the snapshot, checkpoints and any candidate went with the job; its log stays
        work = daemon.config.home / "jobs" / job["id"]
        assert sorted(p.name for p in work.iterdir()) == ["train.log"]
        assert client.get("/models", headers=h).json() == before
        assert daemon.models.active_version() == "tiny-base"
        # the box is free for the next job
        assert client.get("/health/details", headers=h).json()["running_job"] is None


def test_cancel_stops_the_child(tmp_path: Path, trained_baseline: Path) -> None:  # noqa: F811
    with running_daemon(tmp_path / "home", trained_baseline) as (daemon, client, h):
        _labelled_home(client, h, n=8, seed=53)
        job = client.post("/jobs/fine-tune", headers=h, json=FINE_TUNE).json()
        running = _wait(client, h, job["id"], lambda j: (j["progress"] or {}).get("pid"))
        pid = running["progress"]["pid"]
        r = client.delete(f"/jobs/{job['id']}", headers=h)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled"
        assert r.json()["error"] == "cancelled by tester"
        time.sleep(0.5)
        assert not _pid_alive(pid)
        assert client.delete(f"/jobs/{job['id']}", headers=h).status_code == 409
        assert daemon.store.list_models(status="candidate") == []
        assert "job-cancel" in [a.action for a in daemon.store.audit_log()]


def test_restart_fails_unresumable_jobs_and_clears_ended_ones(
        tmp_path: Path, trained_baseline: Path) -> None:  # noqa: F811
    home = tmp_path / "home"
    daemon = Daemon.open(load_config(home), schedule=False, baseline_dir=trained_baseline)
    ghost = daemon.store.create_job("fine-tune", JobParams(folds=2), status="running")
    queued = daemon.store.create_job("nightly", JobParams(), status="queued")
    # what a crash under two ended jobs left: snapshots, checkpoints, a candidate
    ended = {daemon.store.create_job(kind, JobParams(), status="failed"): kind
             for kind in ("fine-tune", "tune")}
    for job_id, kind in ended.items():
        work = home / "jobs" / job_id
        for leftover in ("dataset/samples.parquet", "candidate/members/m0.onnx",
                         ".candidate.work/fold0.safetensors", "train.log",
                         *(["search/trials.csv"] if kind == "tune" else [])):
            (work / leftover).parent.mkdir(parents=True, exist_ok=True)
            (work / leftover).write_bytes(b"x" * 1000)
    daemon.store.close()  # as if the process died: nothing was finished cleanly
    again = Daemon.open(load_config(home), schedule=False)
    try:
        for job_id in (ghost, queued):
            job = again.job(job_id)
            assert job.status == "failed" and job.error is not None
            assert "daemon restarted" in job.error and "cannot resume" in job.error
            assert "dataset snapshot is gone" in job.error
            assert job.finished_at is not None
        assert again.jobs.running() is None
        assert again.models.active_version() == "tiny-base"
        for job_id, kind in ended.items():
            kept = sorted(p.name for p in (home / "jobs" / job_id).iterdir())
            assert kept == (["search", "train.log"] if kind == "tune" else ["train.log"])
    finally:
        again.close()


def test_nightly_needs_enough_new_labels(
        tmp_path: Path, trained_baseline: Path) -> None:  # noqa: F811
    home = tmp_path / "home"
    home.mkdir()
    (home / "appliance.toml").write_text("[nightly]\nmin_new_labels = 6\nfolds = 2\n"
                                         "epochs = 1\narchitecture = 'cnn'\n")
    with running_daemon(home, trained_baseline) as (daemon, client, h):
        _labelled_home(client, h, n=4, seed=54)
        n_train = sum(1 for lab in daemon.store.latest_labels()
                      if not daemon.store.is_exam(lab.hole_id))
        out = client.post("/jobs/nightly", headers=h, json={}).json()
        assert out["started"] is False and out["new_labels"] == n_train
        assert out["min_new_labels"] == 6 and "6 needed" in out["reason"]
        forced = client.post("/jobs/nightly", headers=h, json={"force": True}).json()
        assert forced["started"] is True and forced["job"]["kind"] == "nightly"
        assert forced["job"]["params"]["auto_promote"] is True
        assert forced["job"]["params"]["folds"] == 2
        busy = client.post("/jobs/nightly", headers=h, json={"force": True}).json()
        assert busy["started"] is False and forced["job"]["id"] in busy["reason"]
        client.delete(f"/jobs/{forced['job']['id']}", headers=h)


# -- pure parts -----------------------------------------------------------------------------

def test_parse_event_only_takes_progress_events() -> None:
    assert parse_event('{"event": "epoch", "fold": 0}\n') == {"event": "epoch", "fold": 0}
    assert parse_event("Epoch 1/3 loss 0.2") is None
    assert parse_event('{"event": "something-else"}') is None
    assert parse_event("{not json") is None
    assert parse_event("[1, 2]") is None


def test_fold_progress_fraction_and_eta() -> None:
    p = JobProgress()
    p = fold_progress(p, {"event": "epoch", "fold": 0, "epoch": 0, "train_loss": 1.0,
                          "val_loss": 2.0, "eta_s": 30.0, "epochs_done": 1,
                          "epochs_total": 4}, folds=2, epochs=2)
    assert p.fraction == 0.25 and p.eta_s == 30.0 and p.val_loss == 2.0
    p = fold_progress(p, {"event": "fold_done", "fold": 0}, folds=2, epochs=2)
    assert p.fraction == 0.5
    p = fold_progress(p, {"event": "epoch", "fold": 1, "epoch": 0, "val_loss": float("nan")},
                      folds=2, epochs=2)
    assert p.fraction == 0.75 and p.val_loss is None
    p = fold_progress(p, {"event": "done"}, folds=2, epochs=2)
    assert p.fraction == 1.0 and p.eta_s == 0.0 and p.last_event == "done"


def test_fold_progress_takes_only_what_fits_the_record() -> None:
    # the child's numbers are free JSON: a whole float is a count, a fractional one is not
    p = fold_progress(JobProgress(fold=1), {"event": "epoch", "fold": 1.5, "epoch": 2.0,
                                            "train_loss": 3, "eta_s": "soon"},
                      folds=2, epochs=4)
    assert (p.fold, p.epoch, p.train_loss, p.eta_s) == (1, 2, 3.0, None)
    assert isinstance(p.epoch, int) and isinstance(p.train_loss, float)


def test_next_run_is_the_next_occurrence() -> None:
    now = datetime(2026, 3, 10, 1, 59, 30)
    assert next_run(now, 2, 0) == datetime(2026, 3, 10, 2, 0)
    assert next_run(datetime(2026, 3, 10, 2, 0), 2, 0) == datetime(2026, 3, 11, 2, 0)
    assert next_run(datetime(2026, 12, 31, 23, 0), 2, 0) == datetime(2027, 1, 1, 2, 0)


@pytest.mark.parametrize("hour", [0, 23])
def test_next_run_within_a_day(hour: int) -> None:
    now = datetime(2026, 6, 1, 12, 0)
    at = next_run(now, hour, 30)
    assert 0 < (at - now).total_seconds() <= 86400


def test_schedule_fires_at_its_time_and_stops() -> None:
    import threading
    from datetime import timedelta

    from appliance.jobs.schedule import NightlySchedule

    start = datetime(2026, 3, 10, 1, 59, 59, 900_000)
    origin = time.monotonic()
    fired = threading.Event()

    def clock() -> datetime:  # a night that passes in real time from 01:59:59.9
        return start + timedelta(seconds=time.monotonic() - origin)

    schedule = NightlySchedule(2, 0, fired.set, clock=clock)
    schedule.start()
    try:
        assert fired.wait(5)
        assert schedule.next_at is not None
    finally:
        schedule.stop()
    assert not schedule._thread.is_alive()


def test_a_search_job_lists_its_trials_and_registers_no_model(
        tmp_path: Path, trained_baseline: Path) -> None:  # noqa: F811
    with running_daemon(tmp_path / "home", trained_baseline,
                        train=TrainConfig(device="cpu")) as (daemon, client, h):
        _labelled_home(client, h, n=8, seed=53)
        before = client.get("/models", headers=h).json()
        r = client.post("/jobs/tune", headers=h, json={"trials": 1, "folds": 2, "epochs": 1})
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["kind"] == "tune" and job["params"]["trials"] == 1
        done = _wait(client, h, job["id"], lambda j: j["status"] not in ("queued", "running"))
        assert done["status"] == "succeeded", done
        trials = client.get(f"/jobs/{job['id']}/trials", headers=h)
        assert trials.status_code == 200, trials.text
        rows = trials.json()
        assert [t["number"] for t in rows] == [0] and rows[0]["state"] == "complete"
        best = done["progress"]
        assert best["fraction"] == 1.0 and best["trials_finished"] == 1
        complete = [t for t in rows if t["state"] == "complete"]
        assert best["best_objective"] == min(t["objective"] for t in complete)
        # a fine-tune from a parent keeps its shapes: only rate, head phase and augmentation
        assert set(best["best_params"]) == {"lr", "head_epochs", "augment_strength"}
        assert client.get("/models", headers=h).json() == before
        assert client.get("/jobs/nope/trials", headers=h).status_code == 404
        other = client.post("/jobs/fine-tune", headers=h, json=FINE_TUNE).json()
        client.delete(f"/jobs/{other['id']}", headers=h)
        not_a_search = client.get(f"/jobs/{other['id']}/trials", headers=h)
        assert not_a_search.status_code in (400, 422) and "not a search" in not_a_search.text
