"""Pilot tests of the TUI's behaviour on the deterministic daemon double (fast, no subprocess).

What the operator does against a real daemon is in test_tui_daemon.py; here: the status line,
lost connections, filters, navigation, zoom, settings.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_tui_double import KEY, STAMP, FakeDaemon
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, ProgressBar

from tui.app import ApplianceApp
from tui.screens.hole import HoleScreen
from tui.screens.review import ReviewScreen, parse_since
from tui.screens.training import TrainingScreen
from tui.settings import Settings
from tui.widgets.plot import TracePlot

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Switchable(httpx.AsyncBaseTransport):
    """The double behind a transport that can drop every connection, like a daemon restart."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.down = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


def make_app(daemon: FakeDaemon, tmp_path: Path, **kw: Any) -> ApplianceApp:
    transport = kw.pop("transport", None) or daemon.transport()
    settings = Settings(operator="ana", path=tmp_path / "tui.toml")
    return ApplianceApp("http://daemon.test", KEY, settings=settings, transport=transport,
                        offer_start=False, **{"refresh_s": 0.2, **kw})


async def until(pilot: Pilot, condition: Any, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition never met")


async def test_status_line_counts_new_holes_until_the_queue_is_seen(tmp_path: Path) -> None:
    daemon = FakeDaemon.seeded(n_holes=3)
    app = make_app(daemon, tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: app.status.reachable and len(app.screen.holes) == 3)
        await pilot.press("3")  # look away from the queue
        extra = FakeDaemon.seeded(n_holes=5)
        for hid in list(extra.holes)[3:]:
            daemon.holes[hid], daemon.traces[hid] = extra.holes[hid], extra.traces[hid]
            daemon.labels[hid] = []
        await until(pilot, lambda: app.status.new_holes == 2)
        assert "2 new holes" in str(app.screen.query_one("StatusLine").render())
        await pilot.press("1")
        await until(pilot, lambda: len(app.screen.holes) == 5 and app.status.new_holes == 0)


async def test_lost_connection_is_shown_retried_and_recovers(tmp_path: Path) -> None:
    daemon = FakeDaemon.seeded(n_holes=2)
    transport = Switchable(daemon.transport())
    app = make_app(daemon, tmp_path, transport=transport)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: app.status.reachable is True)
        transport.down = True
        await until(pilot, lambda: app.status.reachable is False and app.status.retries >= 2)
        line = str(app.screen.query_one("StatusLine").render())
        assert "daemon unreachable" in line and "no daemon answers" in line
        transport.down = False
        await until(pilot, lambda: app.status.reachable is True)
        assert app.status.retries == 0


async def test_filters_and_since(tmp_path: Path) -> None:
    daemon = FakeDaemon.seeded(n_holes=4)
    first = next(iter(daemon.holes))
    daemon.labels[first].append({"by": "bo"})
    daemon.holes[first].update(labelled=True, label={"by": "bo"})
    app = make_app(daemon, tmp_path, refresh_s=3600)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.screen
        await until(pilot, lambda: len(screen.holes) == 3)  # unlabelled, needs review
        await pilot.press("f")
        await until(pilot, lambda: len(screen.holes) == 1)
        assert "✔ bo" in screen.query_one(DataTable).get_row_at(0)
        await pilot.press("f")
        await until(pilot, lambda: len(screen.holes) == 4)
        await pilot.press("slash", *"2027-01-01", "enter")
        await until(pilot, lambda: len(screen.holes) == 0)
        assert "holes?status=all" in daemon.requests[-1]


def test_since_accepts_dates_and_names_bad_input() -> None:
    assert parse_since("2026-11-28 14:30") == "2026-11-28T14:30:00"
    assert parse_since(" ") is None
    with pytest.raises(ValueError, match="'yesterday' is not a date"):
        parse_since("yesterday")
    assert STAMP >= "2026"


async def test_hole_navigation_zoom_and_discard(tmp_path: Path) -> None:
    daemon = FakeDaemon.seeded(n_holes=3)
    app = make_app(daemon, tmp_path, refresh_s=3600)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: len(app.screen.holes) == 3)
        order = [h["id"] for h in app.screen.holes]
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, HoleScreen)
                    and app.screen.markers is not None)
        hole = app.screen
        assert hole.hole_id == order[0]
        plot = hole.query_one(TracePlot)
        full = plot.view.span
        await pilot.press("plus", "plus")
        assert plot.view.span == pytest.approx(full / 4)
        centre = (plot.view.lo + plot.view.hi) / 2
        assert centre == pytest.approx(hole.markers.values["entry"])
        await pilot.press("full_stop")
        assert (plot.view.lo + plot.view.hi) / 2 == pytest.approx(centre + full / 16)
        await pilot.press("0")
        assert plot.view.span == pytest.approx(full)
        await pilot.press("n")
        await until(pilot, lambda: hole.hole_id == order[1] and hole.markers is not None
                    and hole.estimate.get("model_version") is not None)
        await pilot.press("p")
        await until(pilot, lambda: hole.hole_id == order[0] and hole.markers is not None)
        await pilot.press("right", "escape")
        await until(pilot, lambda: isinstance(app.screen, ReviewScreen))
        assert all(not v for v in daemon.labels.values())  # Esc sent nothing


async def test_the_trace_is_asked_downsampled(tmp_path: Path) -> None:
    daemon = FakeDaemon.seeded(n_holes=1, n_samples=10_000)
    app = make_app(daemon, tmp_path, refresh_s=3600)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: len(app.screen.holes) == 1)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, HoleScreen)
                    and app.screen.markers is not None)
        assert "trace?max_points=2000" in daemon.requests
        assert len(app.screen.trace.depth_mm) <= 2000


async def test_force_activation_needs_a_typed_reason_and_rollback_confirms(
    tmp_path: Path,
) -> None:
    daemon = FakeDaemon.seeded(n_holes=1)
    app = make_app(daemon, tmp_path, refresh_s=3600)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("3")
        await until(pilot, lambda: len(getattr(app.screen, "models", [])) == 3)
        screen = app.screen
        await pilot.press("down", "down", "F")
        await until(pilot, lambda: len(app.screen_stack) > 1)
        await pilot.press("enter")  # an empty reason is not accepted
        assert "at least 3 characters" in str(app.screen.query_one("#problem").render())
        await pilot.press(*"field trial", "enter")
        await until(pilot, lambda: daemon.active == "ft-0002" and screen.active == "ft-0002")
        assert daemon.activations[0]["reason"] == "field trial"
        await pilot.press("b")
        await until(pilot, lambda: len(app.screen_stack) > 1)
        await pilot.press("n")  # no: nothing changes
        await pilot.pause(0.2)
        assert daemon.active == "ft-0002"
        await pilot.press("b")
        await until(pilot, lambda: len(app.screen_stack) > 1)
        await pilot.press("y")
        await until(pilot, lambda: daemon.active == "baseline" and screen.active == "baseline")
        assert screen.query_one("#history", DataTable).row_count == 3


async def test_operator_name_is_saved_in_settings(tmp_path: Path) -> None:
    daemon = FakeDaemon.seeded(n_holes=1)
    app = make_app(daemon, tmp_path, refresh_s=3600)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("o")
        await until(pilot, lambda: len(app.screen_stack) > 1)
        await pilot.press(*["backspace"] * 3, *"carla", "enter")
        await until(pilot, lambda: app.settings.operator == "carla")
    assert Settings.load(tmp_path / "tui.toml").operator == "carla"


async def test_cancel_a_running_job(tmp_path: Path) -> None:
    daemon = FakeDaemon.seeded(n_holes=1)
    daemon.event_pause_s = 0.1
    with daemon.served() as url:
        app = ApplianceApp(url, KEY, settings=Settings(operator="ana", path=tmp_path / "t"),
                           refresh_s=3600, offer_start=False)
        await cancel_on(app, daemon)


async def cancel_on(app: ApplianceApp, daemon: FakeDaemon) -> None:
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, TrainingScreen))
        screen = app.screen
        screen.query_one("#epochs", Input).value = "50"
        await pilot.press("ctrl+g")
        await until(pilot, lambda: screen.job is not None
                    and (screen.job["progress"]["fraction"] or 0) > 0)
        assert "fold 1/2" in str(screen.query_one("#detail").render())
        await pilot.press("ctrl+k")
        await until(pilot, lambda: screen.job["status"] == "cancelled")
        assert daemon.jobs[0]["status"] == "cancelled"
        assert screen.query_one(ProgressBar).percentage < 1.0
        assert "cancelled by operator" in str(screen.query_one("#job").render())


def test_the_tui_never_loads_the_store_engine_registry_jobs_or_torch() -> None:
    code = ("import sys, tui.app, appliance.commands.tui; "
            "bad = [m for m in sys.modules if m.split('.')[0] == 'torch' or m.startswith("
            "('appliance.store', 'appliance.engine', 'appliance.registry', 'appliance.jobs'))]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_a_broken_settings_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "tui.toml"
    path.write_text("operator = \n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"tui\.toml: not valid TOML"):
        Settings.load(path)
    path.write_text('operator = "dan \\"the\\" driller"\n', encoding="utf-8")
    settings = Settings.load(path)
    assert settings.operator == 'dan "the" driller'
    settings.save()
    assert Settings.load(path).operator == 'dan "the" driller'


async def test_the_queue_refreshes_by_itself_as_holes_arrive(tmp_path: Path) -> None:
    daemon = FakeDaemon.seeded(n_holes=2)
    app = make_app(daemon, tmp_path, refresh_s=0.2)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: len(app.screen.holes) == 2)
        extra = FakeDaemon.seeded(n_holes=3)
        hid = list(extra.holes)[2]
        daemon.holes[hid], daemon.traces[hid], daemon.labels[hid] = (
            extra.holes[hid], extra.traces[hid], [])
        await until(pilot, lambda: len(app.screen.holes) == 3)  # no key pressed
        assert app.screen.query_one(DataTable).row_count == 3
