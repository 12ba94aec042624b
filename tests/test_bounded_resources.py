"""Bounded resources (issue 12, item 3): the trace cache bounded in bytes, event streams that
hold no request thread, a body-read timeout, and a samples-per-hole limit at every ingest.

Real pieces: a store in a temp home, a tiny real ONNX baseline, uvicorn on loopback; the only
stand-in is the training child of the streams' test (a script printing progress events), as
that test is about the streams following a job, not about training.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import sys
import threading
import time
from pathlib import Path

import httpx
import msgspec
import numpy as np
import pytest
from test_api_support import (  # noqa: F401  (fixture)
    add_key,
    fixture_baseline,
    ingest,
    running_daemon,
    served,
    sse_events,
    synth_files,
    write_config,
)

from appliance.cli import main
from appliance.config import load_config
from appliance.errors import ValidationError
from appliance.ingest.setitec_writer import write_setitec
from appliance.services.daemon import Daemon
from appliance.services.trace_cache import TraceCache
from appliance.store import Store
from appliance.synth import generate
from appliance.trace import Trace, TraceMeta


def long_trace(n: int, seed: int = 3) -> Trace:
    """A hole of n samples: a slow plunge with noisy currents and a few step changes."""
    rng = np.random.default_rng(seed)
    depth = np.linspace(-1.0, 30.0, n)
    torque = np.abs(np.cumsum(rng.normal(0, 0.05, n))) + rng.normal(0, 0.2, n)
    thrust = np.abs(np.cumsum(rng.normal(0, 0.05, n))) + rng.normal(0, 0.2, n)
    step = np.repeat(np.arange(1, 5, dtype=np.int32), -(-n // 4))[:n]
    digest = hashlib.sha256(depth.tobytes() + torque.tobytes() + thrust.tobytes()).hexdigest()
    return Trace(TraceMeta(source="long.xls", content_hash=digest, variant="synthetic"),
                 depth, torque, thrust, step, np.zeros(n, dtype=np.int64))


# -- the trace cache -------------------------------------------------------------------------

def test_trace_cache_evicts_least_recently_used_by_bytes() -> None:
    cache = TraceCache(max_bytes=100)
    cache.put("a", b"x" * 40)
    cache.put("b", b"y" * 40)
    assert cache.get("a") == b"x" * 40  # a is now the most recently used
    cache.put("c", b"z" * 40)  # 120 bytes: the least recently used (b) goes
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert cache.nbytes == 80 and len(cache) == 2
    cache.put("a", b"x" * 10)  # a key put again counts once, at its new size
    assert cache.nbytes == 50
    cache.put("huge", b"h" * 101)  # larger than the whole bound: answered, never kept
    assert cache.get("huge") is None and cache.nbytes == 50


def test_many_max_points_on_a_long_hole_stay_under_the_byte_bound(
        tmp_path: Path, fixture_baseline: Path) -> None:  # noqa: F811
    bound_mb = 0.5
    with running_daemon(tmp_path / "home", fixture_baseline,
                        trace_cache_mb=bound_mb) as (daemon, client, h):
        trace = long_trace(120_000)
        hole_id, created = daemon.store.add_hole(trace, "long")
        assert created
        cache = daemon.holes.trace_cache
        assert cache.max_bytes == int(bound_mb * 1024 * 1024)
        answers: dict[int, bytes] = {}
        sizes = []
        for max_points in range(1000, 13_000, 600):  # 20 distinct answers of ~50-600 kB
            r = client.get(f"/holes/{hole_id}/trace", headers=h,
                           params={"max_points": max_points})
            assert r.status_code == 200
            answers[max_points] = r.content
            sizes.append(len(r.content))
            assert cache.nbytes <= cache.max_bytes
        assert sum(sizes) > 5 * cache.max_bytes  # a count bound would have kept them all
        assert len(cache) >= 1
        # every answer is right whether it is served from memory or read again
        for max_points in (1000, 5200, 12_400):
            again = client.get(f"/holes/{hole_id}/trace", headers=h,
                               params={"max_points": max_points})
            assert again.content == answers[max_points]
            t = msgspec.json.decode(again.content)
            assert t["n_samples"] == len(trace)
            assert 0 < t["n_points"] == len(t["index"]) <= max_points
            assert t["index"] == sorted(t["index"])
            assert max(t["torque_a"]) == pytest.approx(float(trace.torque_a.max()), abs=1e-4)
        assert cache.nbytes <= cache.max_bytes


# -- event streams ---------------------------------------------------------------------------

# the training child's stand-in: one epoch event, then (once the test says so) another, then
# it exits 3, which fails the job and ends every stream
CHILD = """
import json, pathlib, sys, time
print(json.dumps({"event": "epoch", "fold": 0, "epoch": 1, "train_loss": 1.0}), flush=True)
gate = pathlib.Path(sys.argv[1])
while not gate.exists():
    time.sleep(0.02)
print(json.dumps({"event": "epoch", "fold": 0, "epoch": 2, "train_loss": 0.5}), flush=True)
sys.exit(3)
"""


def _stream_events(url: str, headers: dict[str, str], job_id: str,
                   events: list[tuple[str, dict]], opened: threading.Event) -> None:
    with httpx.stream("GET", f"{url}/jobs/{job_id}/events", headers=headers,
                      timeout=httpx.Timeout(30.0)) as r:
        assert r.status_code == 200
        for name, data in sse_events(r):
            events.append((name, data))
            opened.set()
            if name == "end":
                return


def test_open_streams_all_follow_a_job_while_the_daemon_answers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        fixture_baseline: Path) -> None:  # noqa: F811
    gate = tmp_path / "go"
    with running_daemon(tmp_path / "home", fixture_baseline) as (daemon, client, h):
        files = synth_files(6, seed=61)
        for hole_id, (_, _, truth) in zip(ingest(client, h, files), files, strict=True):
            assert client.put(f"/holes/{hole_id}/label", headers=h,
                              json={**truth.as_dict(), "by": "ann"}).status_code == 200
        monkeypatch.setattr(daemon.jobs, "_command",
                            lambda *_: [sys.executable, "-c", CHILD, str(gate)])
        with served(daemon) as url:
            r = httpx.post(f"{url}/jobs/fine-tune", headers=h,
                           json={"folds": 2, "epochs": 1}, timeout=30)
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            streams = []
            for _ in range(8):  # more than the request threads of a 2-core box
                events: list[tuple[str, dict]] = []
                opened = threading.Event()
                thread = threading.Thread(target=_stream_events,
                                          args=(url, h, job_id, events, opened), daemon=True)
                thread.start()
                streams.append((thread, events, opened))
            for _, _, opened in streams:
                assert opened.wait(20), "a stream delivered no first event"
            with httpx.Client(base_url=url, headers=h, timeout=10) as c:
                for _ in range(5):  # the daemon still answers while every stream is open
                    listing = c.get("/holes")
                    assert listing.status_code == 200 and listing.json()["total"] == 6
            assert all(t.is_alive() for t, _, _ in streams)  # none ended early
            gate.touch()
            for thread, events, _ in streams:
                thread.join(20)
                assert not thread.is_alive(), "a stream did not end with its job"
                assert events[-1][0] == "end" and events[-1][1]["status"] == "failed"
                assert all(name == "job" for name, _ in events[:-1])
                # the second epoch reached every stream (as a `job` event or in the end)
                assert events[-1][1]["progress"]["epoch"] == 2
                assert any(e["progress"].get("epoch") == 1 for _, e in events)


# -- the body-read timeout -------------------------------------------------------------------

def _slow_post(port: int, key: str, send_body: object) -> tuple[bytes, float, bool]:
    """POST /holes announcing 1,000 body bytes; send_body(sock) sends some of them. Returns
    (the answer, seconds until it came, whether the daemon closed the connection after)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall((f"POST /holes?source=slow.xls HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Authorization: Bearer {key}\r\n"
                      "Content-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n"
                      ).encode())
        start = time.monotonic()
        send_body(sock)  # type: ignore[operator]
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        took = time.monotonic() - start
        try:
            closed = sock.recv(1) == b""
        except ConnectionResetError:  # closed while bytes the client sent were unread
            closed = True
        except TimeoutError:
            closed = False
    return answer, took, closed


def _trickle(sock: socket.socket) -> None:
    sock.settimeout(0.05)
    for _ in range(100):  # a byte every 50 ms: would take 50 s for the announced 1,000
        try:
            sock.sendall(b"x")
            sock.recv(65536, socket.MSG_PEEK)  # the answer came: stop sending
            break
        except TimeoutError:
            continue
    sock.settimeout(10)


def test_slow_bodies_get_408_and_are_cut_off(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        fixture_baseline: Path) -> None:  # noqa: F811
    home = tmp_path / "home"
    write_config(home, "[daemon]\nbody_timeout_s = 0.5\n")
    api_log = logging.getLogger("appliance.api")
    daemon = Daemon.open(load_config(home), schedule=False, baseline_dir=fixture_baseline)
    try:
        key = add_key(daemon, role="integration")
        assert daemon.config.body_timeout_s == 0.5
        with served(daemon) as url, caplog.at_level(logging.WARNING, logger="appliance.api"):
            # Litestar's app set up logging anew (its own root handler): listen on the logger
            api_log.addHandler(caplog.handler)
            port = int(url.rsplit(":", 1)[1])
            for send in (lambda s: s.sendall(b"x" * 10), _trickle):  # a stall, a trickle
                answer, took, closed = _slow_post(port, key, send)
                assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
                assert b"did not arrive within 0.5 s" in answer
                assert 0.45 <= took < 5 and closed
            assert sum("408" in r.getMessage() and "POST /holes" in r.getMessage()
                       for r in caplog.records) == 2
            # a body that arrives in time is served as before
            name, data, _ = synth_files(1, seed=62)[0]
            ok = httpx.post(f"{url}/holes", params={"source": name}, content=data,
                            headers={"Authorization": f"Bearer {key}",
                                     "Content-Type": "application/octet-stream"}, timeout=30)
            assert ok.status_code == 201, ok.text
        assert daemon.store.count_holes() == 1  # the cut-off uploads stored nothing
    finally:
        api_log.removeHandler(caplog.handler)
        daemon.close()


# -- the samples-per-hole limit --------------------------------------------------------------

def test_holes_over_the_samples_limit_are_refused_at_every_ingest(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        fixture_baseline: Path) -> None:  # noqa: F811
    hole = generate(1, 63)[0].trace
    n = len(hole)
    limit = n - 1
    home = tmp_path / "home"
    write_config(home, f"[daemon]\nmax_samples_per_hole = {limit}\n")
    log = tmp_path / "long.xls"
    log.write_bytes(write_setitec(hole))
    counted = f"the trace has {n:,} samples; a hole may have at most {limit:,}"
    expected = f"long.xls: {counted}"
    # the CLI's ingest reads the home's settings
    assert main(["ingest", str(log), "--home", str(home)]) == 3
    assert expected in capsys.readouterr().out
    # the daemon's: POST /holes and every path through the store (watched folders, MQTT)
    with running_daemon(home, fixture_baseline) as (daemon, client, h):
        r = client.post("/holes", params={"source": "long.xls"}, content=log.read_bytes(),
                        headers={**h, "Content-Type": "application/octet-stream"})
        assert r.status_code == 422 and expected in r.json()["detail"]
        with pytest.raises(ValidationError, match=f"{hole.meta.source}: {counted}"):
            daemon.store.check_trace(hole)  # what the bus and the watched folders go through
        assert daemon.store.count_holes() == 0
        # one ingest for both doors: the refused upload is quarantined as the CLI's file was
        quarantined = daemon.store.quarantined()
        assert [Path(q["source"]).name for q in quarantined] == ["long.xls"] * 2
        assert quarantined[0]["error"] == quarantined[1]["error"]
        assert quarantined[0]["error"].startswith(expected)
    with Store.open(tmp_path / "other") as store:  # without settings: the 1,000,000 default
        assert store.max_samples == 1_000_000
        store.add_hole(hole, "g")


def test_resource_settings_are_checked(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cfg = load_config(home)
    assert (cfg.body_timeout_s, cfg.trace_cache_mb, cfg.max_samples_per_hole) == (
        30.0, 64.0, 1_000_000)
    for text, problem in (("body_timeout_s = 0", "body_timeout_s 0 must be positive"),
                          ("trace_cache_mb = -1", "trace_cache_mb -1 must be >= 0"),
                          ("max_samples_per_hole = 0", "max_samples_per_hole 0 must be >= 1"),
                          ("max_samples_per_hole = 1.5", "has the wrong type")):
        write_config(home, f"[daemon]\n{text}\n")
        with pytest.raises(ValidationError, match=problem):
            load_config(home)
