"""The TUI driven by Textual's Pilot against a REAL daemon (`appliance serve` subprocess).

One daemon per module on a free loopback port, on a temp home with synthetic holes
(`appliance synth`) uploaded through POST /holes. The tests run in file order: review and
label, fine-tune, then activate and roll back what the fine-tune produced.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, ProgressBar

from appliance.cli import build_parser
from appliance.home import baseline_model_dir
from tui.app import ApplianceApp
from tui.screens.drift import DriftScreen
from tui.screens.hole import HoleScreen
from tui.screens.models import ModelsScreen
from tui.screens.review import ReviewScreen
from tui.screens.training import TrainingScreen
from tui.settings import Settings
from tui.widgets.drift import DrillTable

pytestmark = pytest.mark.slow
N_HOLES = 6
START_TIMEOUT_S = 60.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def has_command(name: str) -> bool:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return name in sub.choices


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    for needed in ("serve", "keys"):
        if not has_command(needed):
            pytest.skip(f"`appliance {needed}` is not available in this checkout")
    root = tmp_path_factory.mktemp("tui-daemon")
    home, synth = root / "home", root / "synth"
    home.mkdir()
    write_synthetic_holes(synth)
    seed_active_model(home, root)
    # admin: test_activate_and_roll_back forces a candidate past its failed gate
    created = cli("keys", "create", "tui-test", "--role", "admin", "--home", str(home),
                  "--json")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)["key"]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(root / "serve.log", "wb")  # noqa: SIM115 - closed after the daemon stops
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "serve", "--home", str(home), "--port",
         str(port)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    headers = {"Authorization": f"Bearer {key}"}
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, (root / "serve.log").read_text()[-2000:]
            try:
                if httpx.get(f"{url}/health", headers=headers, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the daemon did not answer /health in time"
            time.sleep(0.3)
        files = sorted(p for p in synth.rglob("*") if p.suffix in (".xls", ".txt", ".json")
                       and p.name != "labels.csv")
        assert len(files) >= N_HOLES, f"synth wrote {len(files)} files"
        for i, f in enumerate(files[:N_HOLES]):
            # three source groups: grouped cross-validation needs more than one
            r = httpx.post(f"{url}/holes", params={"source": f.name, "group": f"rig{i % 3}"},
                           content=f.read_bytes(),
                           headers={**headers, "Content-Type": "application/octet-stream"},
                           timeout=60)
            assert r.status_code in (200, 201), r.text
        yield {"url": url, "key": key, "headers": headers, "home": home, "root": root}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def write_synthetic_holes(out: Path) -> None:
    """Setitec files of synthetic holes: `appliance synth` when this checkout has it."""
    if has_command("synth"):
        made = cli("synth", "--n", str(N_HOLES), "--out", str(out), "--seed", "7")
        assert made.returncode == 0, made.stderr
        return
    from appliance.ingest.setitec_writer import write_setitec
    from appliance.synth.generator import generate

    out.mkdir(parents=True)
    for i, hole in enumerate(generate(N_HOLES, seed=7)):
        (out / f"synth_{i:03d}.xls").write_bytes(write_setitec(hole.trace))


def seed_active_model(home: Path, root: Path) -> None:
    """An active model to fine-tune from, before the daemon takes the store.

    With the shipped baseline in the checkout the daemon activates it on first start; without
    it, a tiny model is trained on synthetic holes and activated by the CLI (forced: a model
    trained on nothing confirmed has no exam to pass).
    """
    if (baseline_model_dir() / "manifest.json").is_file():
        return
    if not has_command("train") or not has_command("models"):
        return
    out = root / "seed-model"
    trained = cli("train", "--synthetic", "16", "--out", str(out), "--arch", "cnn", "--folds",
                  "2", "--epochs", "1", "--threads", "1", "--version", "seed-1", timeout=300)
    assert trained.returncode == 0, trained.stderr[-2000:]
    for args in (("register", str(out)),
                 ("activate", "seed-1", "--force", "--reason", "test seed model")):
        done = cli("models", *args, "--home", str(home))
        assert done.returncode == 0, done.stderr[-2000:]


def make_app(daemon: dict[str, Any]) -> ApplianceApp:
    return ApplianceApp(daemon["url"], daemon["key"], settings=Settings(operator="tester"),
                        refresh_s=1.0, offer_start=False, home=daemon["home"])


async def until(pilot: Pilot, condition: Callable[[], bool], timeout: float,
                what: str | Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        await pilot.pause(0.1)


def api(daemon: dict[str, Any], path: str) -> Any:
    r = httpx.get(daemon["url"] + path, headers=daemon["headers"], timeout=30)
    r.raise_for_status()
    return r.json()


@pytest.mark.anyio
async def test_review_open_move_confirm_and_the_label_arrives(daemon: dict[str, Any]) -> None:
    app = make_app(daemon)
    async with app.run_test(size=(140, 40)) as pilot:
        review = app.screen
        assert isinstance(review, ReviewScreen)
        await until(pilot, lambda: len(review.holes) == N_HOLES, 20, "the review queue")
        table = review.query_one(DataTable)
        assert table.row_count == N_HOLES
        assert app.status.reachable
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, HoleScreen)
                    and app.screen.markers is not None, 20, "the hole screen")
        hole = app.screen
        hid = hole.hole_id
        start = dict(hole.markers.values)
        lo, hi = hole.trace.depth_range
        # make sure every point is present and ordered, then nudge entry and exit
        if any(v is None for v in start.values()):
            hole.markers.set("entry", lo + 0.25 * (hi - lo))
            hole.markers.set("transition", lo + 0.5 * (hi - lo))
            hole.markers.set("exit", lo + 0.75 * (hi - lo))
        before = dict(hole.markers.values)
        await pilot.press("e", "right", "right", "right", "x", "left")
        assert hole.markers.values["entry"] == pytest.approx(before["entry"] + 0.15, abs=1e-3)
        assert hole.markers.values["exit"] == pytest.approx(before["exit"] - 0.05, abs=1e-3)
        expected = dict(hole.markers.values)
        await pilot.press("enter")
        await until(pilot, lambda: bool(api(daemon, f"/holes/{hid}/labels")), 20, "the label")
        label = api(daemon, f"/holes/{hid}/labels")[-1]
        assert label["by"] == "tester"
        for name in ("entry", "transition", "exit"):
            assert label[f"{name}_mm"] == pytest.approx(expected[name], abs=1e-6)
        # confirming moved on to the next hole of the queue
        await until(pilot, lambda: app.screen.hole_id != hid, 10, "the next hole")


@pytest.mark.anyio
async def test_order_problem_is_refused_before_sending(daemon: dict[str, Any]) -> None:
    app = make_app(daemon)
    async with app.run_test(size=(140, 40)) as pilot:
        await until(pilot, lambda: bool(app.screen.holes), 20, "the review queue")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, HoleScreen)
                    and app.screen.markers is not None, 20, "the hole screen")
        hole = app.screen
        lo, hi = hole.trace.depth_range
        hole.markers.set("entry", hi - 1.0)
        hole.markers.set("exit", lo + 1.0)
        n_before = len(api(daemon, f"/holes/{hole.hole_id}/labels"))
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert "must be shallower" in str(hole.query_one("#message").render())
        assert len(api(daemon, f"/holes/{hole.hole_id}/labels")) == n_before
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ReviewScreen), 5, "the queue again")


@pytest.mark.anyio
async def test_drift_screen_and_live_accuracy_from_the_real_daemon(
    daemon: dict[str, Any],
) -> None:
    drills = api(daemon, "/drift")["drills"]
    assert drills, "the drift watch saw none of the uploaded holes"
    app = make_app(daemon)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("4")
        await until(pilot, lambda: isinstance(app.screen, DriftScreen)
                    and app.screen.served is True, 20, "the drift screen")
        screen = app.screen
        assert [d.drill for d in screen.drills] == [d["drill"] for d in drills]
        assert screen.query_one(DrillTable).row_count == len(drills)
        await pilot.press("3")
        await until(pilot, lambda: isinstance(app.screen, ModelsScreen)
                    and "Live accuracy" in str(app.screen.query_one("#live").render()), 20,
                    "the live accuracy")
        live = str(app.screen.query_one("#live").render())
        active = api(daemon, "/models/active") if has_active_model(daemon) else None
        if active is None:
            assert "no active model" in live
        elif active["live_accuracy"] is None:
            assert "no confirmed holes yet" in live
        else:
            assert "last 50" in live and str(active["live_accuracy"]["confirmed"]) in live


def has_active_model(daemon: dict[str, Any]) -> bool:
    r = httpx.get(daemon["url"] + "/models/active", headers=daemon["headers"], timeout=30)
    return r.status_code == 200


@pytest.mark.anyio
async def test_a_missing_key_is_explained_not_a_traceback(daemon: dict[str, Any]) -> None:
    app = ApplianceApp(daemon["url"], None, settings=Settings(operator="tester"),
                       refresh_s=1.0, offer_start=False)
    async with app.run_test(size=(140, 40)) as pilot:
        await until(pilot, lambda: bool(app.status.message), 20, "the refusal")
        line = str(app.screen.query_one("StatusLine").render())
        assert "daemon refuses" in line and "--key" in line
        await until(pilot, lambda: "--key" in str(app.screen.query_one("#count").render()),
                    20, "the queue to say why it is empty")


def label_all(daemon: dict[str, Any]) -> None:
    """Confirm the estimate of every hole through the API, so a fine-tune has data."""
    holes = api(daemon, "/holes?status=all&limit=100")["items"]
    for h in holes:
        est = h.get("estimate") or {}
        body = {k: est.get(k) for k in ("entry_mm", "transition_mm", "exit_mm")}
        r = httpx.put(f"{daemon['url']}/holes/{h['id']}/label", json={**body, "by": "setup"},
                      headers=daemon["headers"], timeout=30)
        assert r.status_code == 200, r.text


@pytest.mark.anyio
async def test_fine_tune_progress_reaches_the_end(daemon: dict[str, Any]) -> None:
    label_all(daemon)
    app = make_app(daemon)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, TrainingScreen), 5, "training")
        screen = app.screen
        screen.query_one("#folds").value = "2"
        screen.query_one("#epochs").value = "1"
        screen.query_one("#head_only").value = True  # the shortest fine-tune there is
        await pilot.press("ctrl+g")
        if not has_active_model(daemon):
            # the daemon refuses; the operator reads why, with no traceback
            await until(pilot, lambda: "no active model" in str(
                screen.query_one("#detail").render()), 20, "the refusal to be shown")
            assert "Traceback" not in str(screen.query_one("#detail").render())
            pytest.skip("no active model to fine-tune from (no shipped baseline in this "
                        "checkout): the refusal is shown, the job itself is not run")
        await until(pilot, lambda: screen.job is not None, 20,
                    lambda: f"the job to start: {screen.query_one('#detail').render()}")
        await until(pilot, lambda: screen.job.ended, 240, "the job to finish")
        job = screen.job
        assert job.status == "succeeded", job.error
        assert screen.query_one(ProgressBar).percentage == pytest.approx(1.0)
        assert "succeeded" in str(screen.query_one("#job").render())
        assert screen.events_seen >= 2  # progress came through the event stream
        assert screen.query_one("#log").line_count > 0
        daemon["candidate"] = job.candidate_version


@pytest.mark.anyio
async def test_activate_and_roll_back(daemon: dict[str, Any]) -> None:
    models = api(daemon, "/models")
    if len(models) < 2:
        pytest.skip("the daemon holds fewer than two model versions (no shipped baseline?)")
    active_before = api(daemon, "/models/active")["version"]
    target = next(m["version"] for m in models if not m["active"])
    app = make_app(daemon)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("3")
        await until(pilot, lambda: isinstance(app.screen, ModelsScreen)
                    and len(app.screen.models) == len(models), 20, "the models screen")
        screen = app.screen
        table = screen.query_one("#models", DataTable)
        table.move_cursor(row=[m.version for m in screen.models].index(target))
        gate_ok = next(m for m in models if m["version"] == target)["gate_passed"]
        await pilot.press("F" if not gate_ok else "a")
        await pilot.pause(0.2)
        if gate_ok:
            await pilot.press("y")
        else:
            await pilot.press(*"tested by hand", "enter")
        await until(pilot, lambda: api(daemon, "/models/active")["version"] == target, 30,
                    "the activation")
        await until(pilot, lambda: screen.active == target, 10, "the screen to show it")
        await pilot.press("b")
        await pilot.pause(0.2)
        await pilot.press("y")
        await until(pilot, lambda: api(daemon, "/models/active")["version"] == active_before,
                    30, "the rollback")
        await until(pilot, lambda: screen.active == active_before, 10, "the screen to show it")
        history = screen.query_one("#history", DataTable)
        assert history.row_count >= 2


@pytest.mark.anyio
async def test_no_daemon_offer_starts_one_on_the_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    created = cli("keys", "create", "tui-test", "--home", str(home), "--json")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)["key"]
    url = f"http://127.0.0.1:{free_port()}"
    app = ApplianceApp(url, key, settings=Settings(operator="tester"), refresh_s=0.5,
                       offer_start=True, home=home)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: type(app.screen).__name__ == "StartDaemonScreen", 20,
                    "the offer to start a daemon")
        assert app.status.reachable is False
        await pilot.press("s")
        try:
            await until(pilot, lambda: app.status.reachable is True and not app.status.message,
                        START_TIMEOUT_S,
                        lambda: f"the started daemon: {app.status}")
            assert app.started_daemon is not None and app.started_daemon.poll() is None
        finally:
            if app.started_daemon is not None:
                app.started_daemon.terminate()
                app.started_daemon.wait(timeout=20)
    assert (home / "tui-started-daemon.log").is_file()
