"""End to end: a real `appliance serve` process on a free loopback port, driven over HTTP.

Ingest synthetic holes, label them, fine-tune (tiny), follow the job's server-sent events,
see the candidate gated and activated, roll back, run `appliance nightly`; kill and restart
the daemon mid-job. Every request is bounded by a timeout; every process is stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from test_api_support import (  # noqa: F401  (fixture)
    ServeProcess,
    cli,
    prepare_home,
    sse_events,
    synth_files,
    trained_baseline,
)

from appliance.store import Store

# Few exam holes in a small home: let the accuracy gate decide on them, and a loaded 2-core
# machine must not fail the latency gate.
CONFIG = """
[gates]
min_exam = 1
accuracy_tolerance_mm = 1000.0
latency_factor = 100.0

[nightly]
min_new_labels = 1
folds = 2
epochs = 1
architecture = "cnn"
"""
TIMEOUT = httpx.Timeout(30.0)


def _key(home: Path) -> dict[str, str]:
    done = cli("keys", "create", "e2e", "--home", str(home), "--json")
    assert done.returncode == 0, done.stderr
    return {"Authorization": f"Bearer {json.loads(done.stdout)['key']}"}


def _ingest_and_label(c: httpx.Client, n: int, seed: int) -> list[str]:
    ids = []
    for i, (name, data, truth) in enumerate(synth_files(n, seed)):
        r = c.post("/holes", params={"source": name, "group": f"g{i % 3}"}, content=data,
                   headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        hid = r.json()["hole"]["id"]
        r = c.put(f"/holes/{hid}/label", json={**truth.as_dict(), "by": "e2e"})
        assert r.status_code == 200, r.text
        ids.append(hid)
    return ids


def _follow_events(url: str, headers: dict[str, str], job_id: str, limit_s: float = 240
                   ) -> list[tuple[str, dict]]:
    events: list[tuple[str, dict]] = []
    deadline = time.monotonic() + limit_s
    with httpx.stream("GET", f"{url}/jobs/{job_id}/events", headers=headers,
                      timeout=httpx.Timeout(limit_s, read=60.0)) as r:
        assert r.status_code == 200
        for name, data in sse_events(r):
            events.append((name, data))
            if name == "end":
                break
            assert time.monotonic() < deadline, "event stream did not end in time"
    return events


def _wait_job(c: httpx.Client, job_id: str, until, limit_s: float = 120) -> dict:  # noqa: ANN001
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        job = c.get(f"/jobs/{job_id}").json()
        if until(job):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id}: {job}")


def _gone(pid: int, limit_s: float = 15) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def _upload_forms(c: httpx.Client, url: str, headers: dict[str, str], tmp: Path) -> None:
    """Multipart uploads as curl and browsers send them, to a real server: the file part's
    name becomes the source; the hole joins the review queue with its priority."""
    (name, data, _), (other, other_data, _) = synth_files(2, seed=62)
    log = tmp / name
    log.write_bytes(data)
    if shutil.which("curl"):  # the very command operators are told to use
        done = subprocess.run(
            ["curl", "-sS", "-F", f"file=@{log}", "-H",
             f"Authorization: {headers['Authorization']}", f"{url}/holes"],
            capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        hole = json.loads(done.stdout)["hole"]
    else:
        r = c.post("/holes", files={"file": (name, data)})
        assert r.status_code == 201, r.text
        hole = r.json()["hole"]
    assert hole["source"] == name
    est = c.post("/estimate", files={"file": (other, other_data)}, data={"source": "x.xls"})
    assert est.status_code == 200, est.text
    assert "review_priority" in est.json()
    missing = c.post("/holes", data={"source": other}, files={"log": (other, other_data)})
    assert missing.status_code == 400 and "no file part named 'file'" in missing.text
    queue = c.get("/holes", params={"status": "needs-review"}).json()
    assert [i["id"] for i in queue["items"]] == [hole["id"]]
    assert "review_priority" in queue["items"][0]


@pytest.mark.slow
def test_daemon_end_to_end(tmp_path: Path, trained_baseline: Path) -> None:  # noqa: F811
    home = tmp_path / "home"
    prepare_home(home, trained_baseline, CONFIG)
    headers = _key(home)
    serve = ServeProcess(home)
    try:
        serve.wait_ready(headers)
        with httpx.Client(base_url=serve.url, headers=headers, timeout=TIMEOUT) as c:
            assert c.get("/models/active").json()["version"] == "tiny-base"
            ids = _ingest_and_label(c, 15, seed=61)
            assert c.get("/holes", params={"status": "labelled"}).json()["total"] == len(ids)
            _upload_forms(c, serve.url, headers, tmp_path)

            r = c.post("/jobs/fine-tune", json={"folds": 2, "epochs": 1, "architecture": "cnn"})
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            events = _follow_events(serve.url, headers, job_id)
            assert events[-1][0] == "end"
            assert any(e["progress"]["last_event"] == "epoch" for _, e in events[:-1]) or (
                len(events) >= 2)
            fractions = [e["progress"]["fraction"] or 0.0 for _, e in events]
            assert fractions == sorted(fractions) and fractions[-1] == 1.0
            done = events[-1][1]
            assert done["status"] == "succeeded", done
            cand = done["candidate_version"]

            model = c.get(f"/models/{cand}").json()
            assert model["model"]["status"] == "candidate"
            assert model["gate_report"]["passed"] is True, model["gate_report"]
            assert c.get("/models/active").json()["version"] == "tiny-base"

            r = c.post(f"/models/{cand}/activate", json={})
            assert r.status_code == 200, r.text
            assert c.get("/models/active").json()["version"] == cand
            est = c.get(f"/holes/{ids[0]}/estimate").json()
            assert est["model_version"] == cand  # served by the new model at once

            r = c.post("/models/rollback", json={"reason": "e2e"})
            assert r.status_code == 200, r.text
            assert c.get("/models/active").json()["version"] == "tiny-base"
            history = [a["action"] for a in c.get("/models/activations").json()]
            assert history[:2] == ["rollback", "activate"]

            # the nightly routine, asked for by the CLI over HTTP: fine-tune, gate, promote
            key = headers["Authorization"].split()[1]
            nightly = cli("nightly", "--url", serve.url, "--key", key, "--wait", "--json",
                          timeout=300)
            assert nightly.returncode == 0, nightly.stdout + nightly.stderr
            outcome = json.loads(nightly.stdout)
            assert outcome["started"] is True
            job = outcome["job"]
            assert job["kind"] == "nightly" and job["status"] == "succeeded", job
            assert job["progress"]["gate_passed"] is True
            history = c.get("/models/activations").json()
            if job["progress"]["activated"]:
                assert c.get("/models/active").json()["version"] == job["candidate_version"]
                again = cli("nightly", "--url", serve.url, "--key", key, "--json")
                assert json.loads(again.stdout)["started"] is False  # no new labels since
            else:
                # promoted, then judged worse than the model before it on the confirmed holes
                # (a one-epoch model of 24 synthetic holes may be): rolled back at once
                assert [a["action"] for a in history[:2]] == ["auto-rollback", "activate"]
                assert history[1]["version"] == job["candidate_version"]

            assert 'appliance_jobs_total{outcome="succeeded"} 2' in c.get("/metrics").text
    finally:
        # uvicorn re-raises the SIGTERM it handled once shut down: killed-by-TERM is clean
        assert serve.stop() in (0, -signal.SIGTERM), serve.log.read_text()[-3000:]
    # the daemon let go of the store on a graceful stop
    with Store.open(home) as store:
        assert store.count_holes(labelled=True) == 15


@pytest.mark.slow
def test_daemon_killed_and_stopped_mid_job(tmp_path: Path, trained_baseline: Path  # noqa: F811
                                           ) -> None:
    home = tmp_path / "home"
    prepare_home(home, trained_baseline, CONFIG)
    headers = _key(home)
    serve = ServeProcess(home)
    try:
        serve.wait_ready(headers)
        # the daemon owns the store: the key verbs go through its API (with <home>/admin.key)
        made = cli("keys", "create", "late", "--role", "integration", "--home", str(home),
                   "--url", serve.url, "--json")
        assert made.returncode == 0, made.stderr
        late = {"Authorization": f"Bearer {json.loads(made.stdout)['key']}"}
        assert httpx.get(serve.url + "/holes", headers=late, timeout=10).status_code == 200
        assert httpx.post(serve.url + "/jobs/nightly", json={}, headers=late,
                          timeout=10).status_code == 403  # integration may not fine-tune
        gone = cli("keys", "delete", "late", "--home", str(home), "--url", serve.url)
        assert gone.returncode == 0, gone.stderr
        assert httpx.get(serve.url + "/holes", headers=late, timeout=10).status_code == 401
        with httpx.Client(base_url=serve.url, headers=headers, timeout=TIMEOUT) as c:
            _ingest_and_label(c, 9, seed=62)
            job_id = c.post("/jobs/fine-tune", json={"folds": 2, "epochs": 1}).json()["id"]
            running = _wait_job(c, job_id, lambda j: j["progress"].get("pid"))
        serve.kill()  # SIGKILL: no cleanup at all
        assert _gone(running["progress"]["pid"]), "training child outlived its daemon"
    finally:
        serve.stop()

    serve = ServeProcess(home)
    try:
        serve.wait_ready(headers)
        with httpx.Client(base_url=serve.url, headers=headers, timeout=TIMEOUT) as c:
            # the killed daemon's job resumes on its own snapshot: never a ghost "running"
            resumed = c.get(f"/jobs/{job_id}").json()
            assert resumed["status"] == "running" and resumed["progress"]["resumed_at"]
            assert "resumed at" in (home / "jobs" / job_id / "train.log").read_text()
            assert c.get("/holes", params={"status": "labelled"}).json()["total"] == 9
            assert c.get("/models/active").json()["version"] == "tiny-base"
            assert c.delete(f"/jobs/{job_id}").json()["status"] == "cancelled"
            assert sorted(p.name for p in (home / "jobs" / job_id).iterdir()) == ["train.log"]
            assert [m["version"] for m in c.get("/models").json()] == ["tiny-base"]
            # a graceful stop (SIGTERM) mid-job: the child is stopped, the job waits to resume
            job2 = c.post("/jobs/fine-tune", json={"folds": 2, "epochs": 1}).json()["id"]
            pid = _wait_job(c, job2, lambda j: j["progress"].get("pid"))["progress"]["pid"]
        serve.proc.send_signal(signal.SIGTERM)
        assert serve.proc.wait(timeout=60) in (0, -signal.SIGTERM)
        assert _gone(pid)
    finally:
        serve.stop()
    with Store.open(home) as store:
        job = store.get_job(job2)
        assert job.status == "running" and job.progress.pid is None
        assert (home / "jobs" / job2 / "dataset" / "manifest.json").is_file()
        assert store.active_version() == "tiny-base"
        assert store.count_holes() == 9
