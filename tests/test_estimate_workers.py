"""Estimate worker processes: they answer as the daemon's own process would, parse uploads
(naming the source of one that does not parse), follow a model swap, and a worker that dies
costs no answer: the daemon answers that batch itself and starts another worker."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from model_fixtures import build_model_folder, ramp_trace
from test_api_support import served

from appliance.config import DaemonConfig
from appliance.engine import Engine
from appliance.engine.sessions import set_default_threads
from appliance.engine.workers import ProcessEstimator, Upload, WorkerFailed
from appliance.errors import IngestError
from appliance.estimators.heuristic import read_trace
from appliance.ingest import parse_bytes
from appliance.ingest.setitec_writer import write_setitec
from appliance.points import DepthEstimate
from appliance.services.daemon import Daemon
from appliance.synth import generate


def same(a: DepthEstimate, b: DepthEstimate) -> bool:
    pairs = [(a.entry_mm, b.entry_mm), (a.transition_mm, b.transition_mm),
             (a.exit_mm, b.exit_mm)]
    close = all((u is None) == (v is None) and (u is None or abs(u - v) <= 1e-6)
                for u, v in pairs)
    return close and (a.model_version, a.estimator) == (b.model_version, b.estimator)


@pytest.fixture
def workers():
    pool = ProcessEstimator(1)
    yield pool
    pool.close()


def test_a_worker_answers_traces_and_uploads_as_the_daemon_would(tmp_path: Path, workers):
    set_default_threads(1)
    folder = build_model_folder(tmp_path, "m")
    engine = Engine.from_dir(folder)
    traces = [ramp_trace(entry_mm=3.0 + i, exit_mm=15.0 + i, seed=i, source=f"h{i}")
              for i in range(3)]
    log = write_setitec(generate(1, 7)[0].trace)
    items = [traces[0], Upload(log, "rig-a.xls"), traces[1], Upload(b"not a log\n", "bad.xls"),
             traces[2]]
    assert workers.pids() == []  # started by the first batch, not before

    done = workers.estimate(folder, items)

    assert len(workers.pids()) == 1
    assert len(done.answers) == len(items)
    for i, trace in zip((0, 2, 4), traces, strict=True):
        assert same(done.answers[i], engine.estimate(trace))
    assert same(done.answers[1], engine.estimate(parse_bytes(log, "rig-a.xls")))
    err = done.answers[3]
    assert isinstance(err, IngestError) and err.source == "bad.xls"
    # the rules' reading comes back for the stored traces (the drift watch reads them next)
    assert [i for i, _ in done.readings] == [0, 2, 4]
    for (_, reading), trace in zip(done.readings, traces, strict=True):
        here = read_trace(trace)
        assert (reading is None) == (here is None)
        assert reading is None or reading.ramps == here.ramps
    # without a model the rules answer
    rules = workers.estimate(None, [traces[0]]).answers[0]
    assert isinstance(rules, DepthEstimate) and rules.estimator == "heuristic"


def test_a_worker_follows_the_folder_each_batch_names(tmp_path: Path, workers):
    a = build_model_folder(tmp_path, "model-a")
    b = build_model_folder(tmp_path, "model-b", shift=6)
    trace = ramp_trace()
    first = workers.estimate(a, [trace]).answers[0]
    second = workers.estimate(b, [trace]).answers[0]
    again = workers.estimate(a, [trace]).answers[0]
    assert (first.model_version, second.model_version, again.model_version) == (
        "model-a", "model-b", "model-a")
    assert first.exit_mm != second.exit_mm and same(first, again)


def test_a_killed_worker_fails_its_batch_and_the_next_batch_gets_a_new_one(
        tmp_path: Path, workers):
    folder = build_model_folder(tmp_path, "m")
    trace = ramp_trace()
    before = workers.estimate(folder, [trace]).answers[0]
    (pid,) = workers.pids()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerFailed, match="is gone"):
        workers.estimate(folder, [trace])
    after = workers.estimate(folder, [trace]).answers[0]
    assert workers.restarts == 1 and workers.pids() != [pid]
    assert same(before, after)


def test_the_daemon_answers_through_its_workers_and_survives_losing_one(tmp_path: Path):
    folder = build_model_folder(tmp_path / "shipped", "fixture-base")
    config = DaemonConfig(home=tmp_path / "home", estimate_processes=1)
    daemon = Daemon.open(config, schedule=False, baseline_dir=folder)
    key = daemon.first_key_file.read_text().strip() if daemon.first_key_file else None
    assert key is not None
    log = write_setitec(generate(1, 11)[0].trace)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/octet-stream"}
    try:
        with served(daemon) as url:
            first = httpx.post(f"{url}/estimate", content=log, headers=headers, timeout=60)
            assert first.status_code == 200, first.text
            assert workers_of(daemon) and first.json()["model_version"] == "fixture-base"
            bad = httpx.post(f"{url}/estimate", params={"source": "cut.xls"},
                             content=log[:200], headers=headers, timeout=60)
            assert bad.status_code == 422 and "cut.xls" in bad.text
            for pid in workers_of(daemon):
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
            again = httpx.post(f"{url}/estimate", content=log, headers=headers, timeout=60)
            assert again.status_code == 200, again.text
            assert again.json()["exit_mm"] == pytest.approx(first.json()["exit_mm"], abs=1e-6)
            third = httpx.post(f"{url}/estimate", content=log, headers=headers, timeout=60)
            assert third.status_code == 200 and workers_of(daemon)
        pids = workers_of(daemon)
    finally:
        daemon.close()
    for pid in pids:  # stopped and reaped with the daemon
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def workers_of(daemon: Daemon) -> list[int]:
    assert daemon.models.workers is not None
    return daemon.models.workers.pids()


def test_the_setting_is_checked_and_minus_one_means_one_per_model_thread(tmp_path: Path):
    from appliance.config import load_config
    from appliance.errors import ValidationError
    from appliance.services.batching import serving_workers
    from appliance.services.models import estimate_processes

    (tmp_path / "a.toml").write_text("[daemon]\nestimate_processes = 100\n")
    with pytest.raises(ValidationError, match="estimate_processes 100"):
        load_config(tmp_path, tmp_path / "a.toml")
    (tmp_path / "b.toml").write_text("[daemon]\nestimate_processes = 0\n")
    assert load_config(tmp_path, tmp_path / "b.toml").estimate_processes == 0
    assert DaemonConfig(home=tmp_path).estimate_processes == -1
    assert estimate_processes(-1) == serving_workers() and estimate_processes(3) == 3


def test_a_worker_that_cannot_start_is_a_failed_worker(monkeypatch, tmp_path: Path):
    from appliance.engine import workers as module

    def no_processes(index: int) -> None:
        raise OSError("Resource temporarily unavailable")

    monkeypatch.setattr(module, "EstimateProcess", no_processes)
    pool = ProcessEstimator(1)
    with pytest.raises(WorkerFailed, match="could not start .*Resource temporarily"):
        pool.estimate(None, [ramp_trace()])
    pool.close()


def test_without_workers_the_daemon_parses_and_answers_uploads_itself(tmp_path: Path):
    folder = build_model_folder(tmp_path / "shipped", "fixture-base")
    daemon = Daemon.open(DaemonConfig(home=tmp_path / "home", estimate_processes=0),
                         schedule=False, baseline_dir=folder)
    assert daemon.models.workers is None and daemon.first_key_file is not None
    headers = {"Authorization": f"Bearer {daemon.first_key_file.read_text().strip()}",
               "Content-Type": "application/octet-stream"}
    log = write_setitec(generate(1, 11)[0].trace)
    try:
        with served(daemon) as url:
            good = httpx.post(f"{url}/estimate", content=log, headers=headers, timeout=60)
            bad = httpx.post(f"{url}/estimate", params={"source": "cut.xls"},
                             content=log[:200], headers=headers, timeout=60)
    finally:
        daemon.close()
    assert good.status_code == 200 and good.json()["model_version"] == "fixture-base"
    assert bad.status_code == 422 and "cut.xls" in bad.text
