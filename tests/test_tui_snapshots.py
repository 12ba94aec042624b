"""Snapshot tests (pytest-textual-snapshot) of every screen at a fixed terminal size.

The daemon here is the in-memory double of test_tui_double.py: its data are fixed, so the
pictures are reproducible. Snapshots live in tests/snapshots/; after an intended change of
the UI, look at the new pictures and accept them with `pytest tests/test_tui_snapshots.py
--snapshot-update`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_textual_snapshot
from test_tui_double import KEY, FakeDaemon
from textual.pilot import Pilot
from textual.widgets import Input

from tui.app import ApplianceApp
from tui.screens.dialogs import StartDaemonScreen
from tui.screens.drift import DriftScreen
from tui.screens.hole import HoleScreen
from tui.screens.models import ModelsScreen
from tui.screens.review import ReviewScreen
from tui.screens.training import TrainingScreen
from tui.settings import Settings
from tui.widgets.training import TrialTable

SIZE = (120, 36)
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class TuiSVGExtension(pytest_textual_snapshot.SVGImageExtension):
    """The same SVG snapshots, kept in tests/snapshots/<test module>/."""

    @classmethod
    def dirname(cls, *, test_location) -> str:  # noqa: ANN001 - syrupy's signature
        return str(SNAPSHOTS / test_location.basename)


@pytest.fixture(autouse=True)
def _snapshots_in_tests_snapshots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pytest_textual_snapshot, "SVGImageExtension", TuiSVGExtension)


def app_on(daemon: FakeDaemon) -> ApplianceApp:
    # a long refresh: the picture must not depend on when a periodic poll lands
    return ApplianceApp("http://daemon.test", KEY, settings=Settings(operator="ana"),
                        transport=daemon.transport(), refresh_s=3600, offer_start=False)


async def wait_for(pilot: Pilot, condition, timeout: float = 10.0) -> None:  # noqa: ANN001
    for _ in range(int(timeout / 0.05)):
        if condition():
            # toasts fade on a timer: keep them out of the pictures
            pilot.app.clear_notifications()
            await pilot.pause()
            return
        await pilot.pause(0.05)
    raise AssertionError("the screen never reached the state to photograph")


def test_review_queue(snap_compare) -> None:  # noqa: ANN001 - pytest fixture
    app = app_on(FakeDaemon.seeded())

    async def loaded(pilot: Pilot) -> None:
        await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen)
                       and len(app.screen.holes) == 5 and app.status.reachable)

    assert snap_compare(app, terminal_size=SIZE, run_before=loaded)


def test_hole_screen_with_a_moved_marker(snap_compare) -> None:  # noqa: ANN001
    app = app_on(FakeDaemon.seeded())

    async def opened(pilot: Pilot) -> None:
        await wait_for(pilot, lambda: len(app.screen.holes) == 5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, HoleScreen)
                       and app.screen.markers is not None)
        await pilot.press("x", "left", "left", "t")
        await pilot.press("a")

    assert snap_compare(app, terminal_size=SIZE, run_before=opened)


def test_training_after_a_finished_job(snap_compare) -> None:  # noqa: ANN001
    app = app_on(FakeDaemon.seeded())

    async def trained(pilot: Pilot) -> None:
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainingScreen))
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: app.screen.job is not None
                       and app.screen.job.status == "succeeded")

    assert snap_compare(app, terminal_size=SIZE, run_before=trained)


def test_training_after_a_search(snap_compare) -> None:  # noqa: ANN001
    app = app_on(FakeDaemon.seeded())

    async def searched(pilot: Pilot) -> None:
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainingScreen))
        app.screen.query_one("#trials", Input).value = "6"
        await pilot.press("ctrl+t")
        # the last read of the trials follows the job's end: wait for all of them
        await wait_for(pilot, lambda: app.screen.job is not None
                       and app.screen.job.status == "succeeded"
                       and app.screen.query_one(TrialTable).row_count == 6)

    assert snap_compare(app, terminal_size=SIZE, run_before=searched)


def test_models_with_a_refused_activation(snap_compare) -> None:  # noqa: ANN001
    app = app_on(FakeDaemon.seeded())

    async def refused(pilot: Pilot) -> None:
        await pilot.press("3")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelsScreen)
                       and len(app.screen.models) == 3)
        await pilot.press("down", "down", "a")
        await wait_for(pilot, lambda: len(app.screen_stack) > 1)
        await pilot.press("y")
        await wait_for(pilot, lambda: "refused" in str(app.screen.query_one("#message")
                                                        .render())
                       and "accuracy: fail" in str(app.screen.query_one("#detail").render()))

    assert snap_compare(app, terminal_size=SIZE, run_before=refused)


def test_drift_screen_with_an_alarm(snap_compare) -> None:  # noqa: ANN001
    daemon = FakeDaemon.seeded()
    daemon.raise_alarm("SN103", at_hole=37)
    app = app_on(daemon)

    async def drifting(pilot: Pilot) -> None:
        await wait_for(pilot, lambda: bool(app.status.drift_alarms))
        await pilot.press("4")
        await wait_for(pilot, lambda: isinstance(app.screen, DriftScreen)
                       and len(app.screen.drills) == 5)
        await pilot.press("down", "down", "down")  # the drill in alarm

    assert snap_compare(app, terminal_size=SIZE, run_before=drifting)


def test_help_screen(snap_compare) -> None:  # noqa: ANN001
    app = app_on(FakeDaemon.seeded())

    async def helped(pilot: Pilot) -> None:
        await wait_for(pilot, lambda: len(app.screen.holes) == 5)
        await pilot.press("question_mark")

    assert snap_compare(app, terminal_size=SIZE, run_before=helped)


def test_no_daemon_offers_to_start_one(snap_compare, tmp_path: Path) -> None:  # noqa: ANN001
    app = ApplianceApp("http://127.0.0.1:9", None, settings=Settings(operator="ana"),
                       refresh_s=3600, offer_start=True, home="/srv/appliance-home")

    async def offered(pilot: Pilot) -> None:
        await wait_for(pilot, lambda: len(app.screen_stack) > 1)
        await wait_for(pilot, lambda: isinstance(app.screen, StartDaemonScreen))

    assert snap_compare(app, terminal_size=SIZE, run_before=offered)
