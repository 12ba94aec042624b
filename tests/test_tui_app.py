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

from appliance.points import DepthPoints
from appliance.records import JobParams
from tui.app import ApplianceApp
from tui.screens.dialogs import PickScreen
from tui.screens.drift import DriftScreen
from tui.screens.hole import HoleScreen
from tui.screens.models import ModelsScreen
from tui.screens.review import ReviewScreen, parse_since
from tui.screens.training import TrainingScreen
from tui.settings import Settings
from tui.widgets.drift import DrillTable, SignalBars
from tui.widgets.plot import TracePlot
from tui.widgets.training import TrialTable

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
    daemon.add_label(first, DepthPoints(2.0, 9.0, 18.0), "bo")
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
        order = [h.hole_id for h in app.screen.holes]
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
                    and hole.estimate == daemon.holes[order[1]].estimate)
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
        assert daemon.activations[0].reason == "field trial"
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
                    and (screen.job.progress.fraction or 0) > 0)
        assert "fold 1/2" in str(screen.query_one("#detail").render())
        await pilot.press("ctrl+k")
        await until(pilot, lambda: screen.job.status == "cancelled")
        assert daemon.jobs[0].status == "cancelled"
        assert screen.query_one(ProgressBar).percentage < 1.0
        assert "cancelled by operator" in str(screen.query_one("#job").render())


async def test_a_search_started_on_the_training_screen_lists_its_trials(tmp_path: Path) -> None:
    daemon = FakeDaemon.seeded(n_holes=1)
    daemon.event_pause_s = 0.15  # over real HTTP: the events arrive one trial at a time
    with daemon.served() as url:
        app = ApplianceApp(url, KEY, settings=Settings(operator="ana", path=tmp_path / "t"),
                           refresh_s=3600, offer_start=False)
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.press("2")
            await until(pilot, lambda: isinstance(app.screen, TrainingScreen))
            screen = app.screen
            table = screen.query_one(TrialTable)
            assert not table.display  # no search followed: no table
            screen.query_one("#trials", Input).value = "0"
            await pilot.press("ctrl+t")
            await until(pilot, lambda: "trials must be a whole number from 1 to 500"
                        in str(screen.query_one("#detail").render()))
            assert not daemon.jobs
            screen.query_one("#trials", Input).value = "5"
            await pilot.press("ctrl+t")
            # the table fills as the trials end, not only once the search has
            await until(pilot, lambda: table.display and 0 < table.row_count < 5)
            await until(pilot, lambda: screen.job.status == "succeeded"
                        and table.row_count == 5)
            job_line = str(screen.query_one("#job").render())
    assert daemon.jobs[0].params == JobParams(trials=5, folds=2, epochs=1, requested_by="tui")
    assert "search: 5/5 trials, best objective 0.400 mm" in job_line
    assert table.best == 4 and table.get_row("4")[0].plain == "4 ★"
    assert [table.get_row(str(k))[1].plain for k in range(3)] == ["complete", "complete",
                                                                  "pruned"]
    assert list(table.columns)[-3:] == ["lr", "head_epochs", "augment_strength"]


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


# --- the drift watch and live accuracy (issue 14) ----------------------------------------------


def status_line(app: ApplianceApp) -> str:
    return str(app.screen.query_one("StatusLine").render())


async def test_status_line_shows_drift_alarms_and_nothing_without_them(tmp_path: Path) -> None:
    daemon = FakeDaemon.seeded(n_holes=5)
    app = make_app(daemon, tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: app.status.reachable is True)
        assert "DRIFT" not in status_line(app)
        daemon.raise_alarm("SN103", at_hole=37)
        await until(pilot, lambda: bool(app.status.drift_alarms))
        assert "DRIFT: drill SN103 since hole 37" in status_line(app)
        daemon.raise_alarm("SN104", at_hole=50)
        await until(pilot, lambda: len(app.status.drift_alarms) == 2)
        assert "DRIFT: 2 drills in alarm" in status_line(app)


async def test_a_daemon_without_drift_leaves_the_status_line_as_it_was(tmp_path: Path) -> None:
    daemon = FakeDaemon.seeded(n_holes=2)
    daemon.has_drift = False  # GET /drift answers 404
    app = make_app(daemon, tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: app.status.reachable is True and len(app.screen.holes) == 2)
        await pilot.pause(0.5)  # a few polls
        line = status_line(app)
        assert "daemon ok" in line and "DRIFT" not in line and not app.status.message
        await pilot.press("4")
        await until(pilot, lambda: isinstance(app.screen, DriftScreen)
                    and app.screen.served is False)
        assert "no drift watch" in str(app.screen.query_one("#summary").render())


async def test_drift_screen_lists_drills_and_resets_one_after_confirming(
    tmp_path: Path,
) -> None:
    daemon = FakeDaemon.seeded(n_holes=5)
    daemon.raise_alarm("SN103", at_hole=37, signals=("thrust",))
    app = make_app(daemon, tmp_path, refresh_s=3600)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: bool(app.status.drift_alarms))
        await pilot.press("4")
        await until(pilot, lambda: isinstance(app.screen, DriftScreen)
                    and len(app.screen.drills) == 5)
        screen = app.screen
        table = screen.query_one(DrillTable)
        assert [str(table.get_row_at(i)[0]) for i in range(5)] == [
            "SN100", "SN101", "SN102", "SN103", "SN104"]
        assert [str(c) for c in table.get_row_at(3)[1:]] == [
            " alarm ", "39", "37", "2026-11-28 09:00:00", "thrust"]
        assert "1 in alarm" in str(screen.query_one("#summary").render())
        table.move_cursor(row=3)
        await until(pilot, lambda: screen.query_one(SignalBars).drill is not None
                    and screen.query_one(SignalBars).drill.drill == "SN103")
        bars = str(screen.query_one(SignalBars).render())
        assert "thrust" in bars and "14.0 / 10.0 alarm" in bars and "h=10" in bars
        await pilot.press("R")
        await until(pilot, lambda: len(app.screen_stack) > 1)
        assert "drill SN103" in str(app.screen.query_one("#question").render())
        await pilot.press("n")  # no: nothing is sent
        await pilot.pause(0.2)
        assert daemon.drift_resets == []
        await pilot.press("R")
        await until(pilot, lambda: len(app.screen_stack) > 1)
        await pilot.press("y")
        await until(pilot, lambda: daemon.drift_resets == ["SN103"]
                    and not app.status.drift_alarms)
        await until(pilot, lambda: str(table.get_row_at(3)[1]) == "learning")
        assert "DRIFT" not in status_line(app)
        assert "reset at hole 39" in str(screen.query_one("#message").render())


async def test_review_queue_filters_to_a_drill_and_back(tmp_path: Path) -> None:
    daemon = FakeDaemon.seeded(n_holes=5)
    app = make_app(daemon, tmp_path, refresh_s=3600)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.screen
        await until(pilot, lambda: len(screen.holes) == 5)
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, PickScreen))
        # all drills, then SN100..SN104 (none in alarm)
        await pilot.press("down", "down", "down", "enter")
        await until(pilot, lambda: len(screen.holes) == 1)
        assert screen.holes[0].drill_serial == "SN102"
        assert daemon.requests[-1] == "holes?status=needs-review&drill=SN102"
        assert str(screen.query_one("#drill").render()) == "drill SN102"
        assert screen.query_one("#drill").display and "1 hole ·" in str(
            screen.query_one("#count").render())
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, PickScreen))
        await pilot.press("escape")  # Esc keeps the filter
        await until(pilot, lambda: app.screen is screen)
        assert screen.drill == "SN102"
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, PickScreen))
        await pilot.press("home", "enter")  # all drills: the filter is cleared
        await until(pilot, lambda: len(screen.holes) == 5)
        assert "drill=" not in daemon.requests[-1]
        assert not screen.query_one("#drill").display


async def test_enter_on_a_drill_opens_its_review_queue(tmp_path: Path) -> None:
    daemon = FakeDaemon.seeded(n_holes=5)
    daemon.raise_alarm("SN101", at_hole=21)
    app = make_app(daemon, tmp_path, refresh_s=3600)
    async with app.run_test(size=(120, 36)) as pilot:
        review = app.screen
        await until(pilot, lambda: len(review.holes) == 5)
        await pilot.press("4")
        await until(pilot, lambda: isinstance(app.screen, DriftScreen)
                    and len(app.screen.drills) == 5)
        app.screen.query_one(DrillTable).move_cursor(row=1)
        await pilot.press("enter")
        await until(pilot, lambda: app.screen is review and len(review.holes) == 1)
        assert review.drill == "SN101" and "drill=SN101" in daemon.requests[-1]


async def test_models_screen_shows_live_accuracy(tmp_path: Path) -> None:
    daemon = FakeDaemon.seeded(n_holes=1)
    app = make_app(daemon, tmp_path, refresh_s=3600)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("3")
        await until(pilot, lambda: isinstance(app.screen, ModelsScreen)
                    and "last 50" in str(app.screen.query_one("#live").render()))
        live = str(app.screen.query_one("#live").render())
        assert "Live accuracy of baseline" in live and "137 in all" in live
        assert "last 200" in live and "0.184" in live and "0.437" in live and "96%" in live
        daemon.live.clear()  # the active model has no confirmed holes
        await pilot.press("r")
        await until(pilot, lambda: "no confirmed holes yet"
                    in str(app.screen.query_one("#live").render()))
        daemon.has_drift = False  # an older daemon: the field is not there at all
        await pilot.press("r")
        await until(pilot, lambda: "not served by this daemon"
                    in str(app.screen.query_one("#live").render()))


def test_signal_bars_stand_against_the_threshold_line() -> None:
    from appliance.records import DriftSignal
    from tui.widgets.drift import FULL_CELL, HALF_CELL, bar_cells, signal_row
    from tui.widgets.status import drift_text

    bar, at, cut = bar_cells(5.0, 10.0, 20.0, 40)  # a quarter of the full scale
    assert at == 20 and not cut and bar == FULL_CELL * 10 + " " * 30
    bar, _, _ = bar_cells(5.25, 10.0, 20.0, 40)  # half a cell more
    assert bar.rstrip() == FULL_CELL * 10 + HALF_CELL
    bar, _, cut = bar_cells(55.0, 10.0, 20.0, 40)  # past the end: cut, not wrapped
    assert cut and bar == FULL_CELL * 40
    row = signal_row(DriftSignal("residual_exit", 55.0, 10.0, "alarm"), 20.0, 40).plain
    assert row.startswith("residual_exit") and "┃" in row and "▸" in row
    assert row.endswith("55.0 / 10.0 alarm")
    assert "not computed yet" in signal_row(DriftSignal("torque", None, 10.0, "ok"), 20.0,
                                            40).plain
    assert drift_text(()) == ""


async def test_drift_screen_says_why_a_reset_or_a_load_failed_and_recovers(
    tmp_path: Path,
) -> None:
    daemon = FakeDaemon.seeded(n_holes=5)
    daemon.raise_alarm("SN103", at_hole=37)
    transport = Switchable(daemon.transport())
    app = ApplianceApp("http://daemon.test", None, transport=transport, offer_start=False,
                       settings=Settings(operator="ana", path=tmp_path / "tui.toml"),
                       refresh_s=1.0)  # longer than a failing read's retries
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("4")
        await until(pilot, lambda: isinstance(app.screen, DriftScreen)
                    and len(app.screen.drills) == 5)
        screen = app.screen
        screen.query_one(DrillTable).move_cursor(row=3)
        await pilot.press("R")
        await until(pilot, lambda: len(app.screen_stack) > 1)
        await pilot.press("y")  # no key: the daemon refuses, and the screen says why
        await until(pilot, lambda: "--key" in str(screen.query_one("#message").render()))
        assert daemon.drift_resets == []
        transport.down = True
        await until(pilot, lambda: "no daemon answers" in str(
            screen.query_one("#message").render()))
        transport.down = False
        await until(pilot, lambda: str(screen.query_one("#message").render()) == "")
        assert str(screen.query_one(DrillTable).get_row_at(3)[1]) == " alarm "
