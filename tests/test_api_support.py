"""Helpers for the daemon's tests (API, jobs, end to end); holds no tests itself.

Real pieces only: a store in a temp home, a tiny but real ONNX baseline (tests/model_fixtures)
or a tiny really trained one (`appliance train`), synthetic holes written as real Setitec files.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from litestar.testing import TestClient
from loopback import free_port, serve_in_thread
from model_fixtures import build_model_folder

from api.app import create_app
from appliance.config import load_config
from appliance.ingest.json_writer import write_json_messages
from appliance.ingest.setitec_writer import write_setitec
from appliance.points import DepthPoints
from appliance.services.daemon import Daemon
from appliance.services.keys import hash_key, new_key
from appliance.synth import generate

REPO = Path(__file__).resolve().parent.parent


def synth_files(n: int, seed: int) -> list[tuple[str, bytes, DepthPoints]]:
    """(file name, Setitec bytes, truth) for n synthetic holes."""
    return [(f"synth_{seed}_{i:04d}.xls", write_setitec(h.trace), h.truth)
            for i, h in enumerate(generate(n, seed))]


def synth_json_body(seed: int) -> bytes:
    """One synthetic hole as the JSON trace + result message pair the API accepts."""
    messages = write_json_messages(generate(1, seed)[0].trace)
    return json.dumps({"trace": json.loads(messages["Trace.json"]),
                       "result": json.loads(messages["Result.json"])}).encode()


def write_config(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "appliance.toml").write_text(text)


def add_key(daemon: Daemon, name: str = "tester", role: str = "admin") -> str:
    key = new_key()
    daemon.store.add_api_key(name, hash_key(key), role=role)
    return key


@contextmanager
def running_daemon(home: Path, baseline: Path | None, **overrides: object
                   ) -> Iterator[tuple[Daemon, TestClient, dict[str, str]]]:
    """A real daemon on a temp home behind Litestar's test client, and a valid key header."""
    daemon = Daemon.open(load_config(home, **overrides), schedule=False, baseline_dir=baseline)
    try:
        key = add_key(daemon)
        with TestClient(create_app(daemon)) as client:
            yield daemon, client, {"Authorization": f"Bearer {key}"}
    finally:
        daemon.close()


@contextmanager
def served(daemon: Daemon) -> Iterator[str]:
    """The daemon's app over real HTTP (loopback.serve_in_thread; no lifespan: the estimate
    path is not warmed); its base URL."""
    with serve_in_thread(create_app(daemon), "the daemon") as url:
        yield url


def sse_events(response: httpx.Response) -> Iterator[tuple[str, dict]]:
    """(event name, data) of each event of a server-sent event stream, as they arrive."""
    name = None
    for line in response.iter_lines():
        if line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            yield name or "message", json.loads(line.split(":", 1)[1])


def ingest(client: TestClient, headers: dict[str, str], files: list[tuple[str, bytes, object]]
           ) -> list[str]:
    """Upload the files (spread over 3 source groups, as grouped CV needs); their hole ids."""
    ids = []
    for i, (name, data, _) in enumerate(files):
        r = client.post("/holes", params={"source": name, "group": f"batch{i % 3}"},
                        content=data,
                        headers={**headers, "Content-Type": "application/octet-stream"})
        assert r.status_code in (200, 201), r.text
        ids.append(r.json()["hole"]["id"])
    return ids


@pytest.fixture
def fixture_baseline(tmp_path: Path) -> Path:
    """A tiny real ONNX model folder (no torch), registered as the shipped baseline."""
    return build_model_folder(tmp_path / "shipped", "fixture-base")


@pytest.fixture(scope="session")
def trained_baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny cnn ensemble really trained by `appliance train` (fine-tunable: real weights).

    Trained once per test session: the folder is kept in the session's base temp dir, since
    each test module that imports this fixture gets its own copy of it."""
    out = tmp_path_factory.getbasetemp() / "trained-tiny-base"
    if (out / "manifest.json").is_file():
        return out
    cmd = [sys.executable, "-m", "appliance.cli", "train", "--synthetic", "24", "--arch", "cnn",
           "--folds", "2", "--epochs", "1", "--seed", "3", "--version", "tiny-base",
           "--out", str(out), "--progress-json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return out


# -- a real `appliance serve` process ------------------------------------------------------

def prepare_home(home: Path, baseline: Path, config: str = "") -> None:
    """A home whose active model is `baseline` (registered on this first start)."""
    if config:
        write_config(home, config)
    Daemon.open(load_config(home), schedule=False, baseline_dir=baseline).close()


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env=env)


class ServeProcess:
    """`appliance serve` on a free loopback port; stopped (and waited for) on exit."""

    def __init__(self, home: Path, extra: tuple[str, ...] = ()) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home.parent / f"serve-{self.port}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appliance.cli", "serve", "--home", str(home),
             "--host", "127.0.0.1", "--port", str(self.port), "--no-schedule", *extra],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, cwd=REPO)

    def wait_ready(self, headers: dict[str, str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}: "
                                     f"{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", headers=headers, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"serve not ready: {self.log.read_text()[-3000:]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
