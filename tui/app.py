"""The operator's terminal UI: a Textual app that talks to the daemon over HTTP only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from textual.app import App
from textual.binding import Binding
from textual.reactive import reactive

from appliance.home import resolve_home
from appliance.records import DrillDrift, Job
from tui.client import ApiError, DaemonClient, DaemonUnreachable
from tui.screens.dialogs import OperatorScreen, StartDaemonScreen
from tui.screens.drift import DriftScreen
from tui.screens.help import HelpScreen
from tui.screens.hole import HoleScreen
from tui.screens.models import ModelsScreen
from tui.screens.review import ReviewScreen
from tui.screens.training import TrainingScreen
from tui.settings import Settings
from tui.widgets.status import DaemonStatus

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class ApplianceApp(App[int]):
    TITLE = "Drill appliance"
    MODES = {"review": ReviewScreen, "training": TrainingScreen, "models": ModelsScreen,
             "drift": DriftScreen}
    DEFAULT_MODE = "review"
    BINDINGS = [
        Binding("1", "switch_mode('review')", "Queue"),
        Binding("2", "switch_mode('training')", "Training"),
        Binding("3", "switch_mode('models')", "Models"),
        Binding("4", "switch_mode('drift')", "Drift"),
        Binding("o", "operator", "Operator", show=False),
        Binding("question_mark,f1", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    status: reactive[DaemonStatus] = reactive(DaemonStatus, always_update=True)

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        settings: Settings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        refresh_s: float = 3.0,
        offer_start: bool = True,
        home: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings or Settings.load()
        self.url = (url or self.settings.url).rstrip("/")
        self.client = DaemonClient(self.url, key or self.settings.key, transport=transport)
        self.refresh_s = refresh_s
        self.offer_start = offer_start
        self.home = Path(home) if home is not None else resolve_home()
        self.holes_seen: int | None = None
        self.holes_now: int | None = None
        self._offered = False
        self.started_daemon: subprocess.Popen[bytes] | None = None

    async def on_mount(self) -> None:
        self.set_interval(self.refresh_s, self.poll_status)
        await self.poll_status()

    async def on_unmount(self) -> None:
        await self.client.aclose()

    # --- the status line -------------------------------------------------------------------

    async def poll_status(self) -> None:
        old = self.status
        try:
            health = await self.client.health_details()
            version = health.active_model or ""
            if not version:
                # no model serves: say which estimator answers instead
                version = f"none ({health.estimator or 'rule-based'})"
            job = health.running_job
            self.holes_now = health.store.holes
            if self.holes_now is None:
                self.holes_now = await self.client.count_holes()
            if self.holes_seen is None:
                self.holes_seen = self.holes_now
        except DaemonUnreachable as exc:
            self.status = DaemonStatus(
                reachable=False, message=exc.message, active_version=old.active_version,
                retries=old.retries + 1, drift_alarms=old.drift_alarms,
            )
            self._offer_daemon(exc.message)
            return
        except ApiError as exc:
            # it answers but refuses (a missing key, say): reachable, with the reason shown
            self.status = DaemonStatus(reachable=True, message=exc.message,
                                       active_version=old.active_version,
                                       drift_alarms=old.drift_alarms)
            return
        self.status = DaemonStatus(
            reachable=True,
            message="",
            active_version=version,
            job=_job_text(job),
            new_holes=max(0, (self.holes_now or 0) - (self.holes_seen or 0)),
            drift_alarms=await self._drift_alarms(old.drift_alarms),
        )

    async def _drift_alarms(self, known: tuple[DrillDrift, ...]) -> tuple[DrillDrift, ...]:
        """The drills in alarm. The drift watch is an extra of the line: a daemon without it
        (404) shows none, and a failed call keeps what was known (an alarm holds until an
        operator resets it, so one lost poll does not mean it went away)."""
        try:
            drills = await self.client.drift()
        except ApiError:
            return known
        if drills is None:
            return ()
        return tuple(d for d in drills if d.state == "alarm")

    def mark_holes_seen(self) -> None:
        """The operator looked at the queue: the 'new holes' count starts again from zero."""
        if self.holes_now is not None:
            self.holes_seen = self.holes_now
            if self.status.new_holes:
                self.status = DaemonStatus(**{**self.status.__dict__, "new_holes": 0})

    # --- no daemon: offer to start one -------------------------------------------------------

    def _offer_daemon(self, reason: str) -> None:
        if not self.offer_start or self._offered:
            return
        self._offered = True

        def chosen(choice: str | None) -> None:
            if choice == "start":
                self.start_daemon()
            elif choice == "quit":
                self.exit(1)

        self.push_screen(StartDaemonScreen(self.url, str(self.home), reason), chosen)

    def start_daemon(self) -> None:
        parts = urlsplit(self.url)
        if parts.hostname not in LOOPBACK:
            self.notify(f"will not start a daemon for {self.url}: not a loopback address",
                        severity="error")
            return
        port = parts.port or 8470
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.home / "tui-started-daemon.log", "ab")  # noqa: SIM115 - owned by child
        self.started_daemon = subprocess.Popen(
            [sys.executable, "-m", "appliance.cli", "serve", "--home", str(self.home),
             "--host", parts.hostname or "127.0.0.1", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # the daemon outlives the TUI
        )
        log.close()
        self.notify(f"starting a daemon on {self.home} (log: tui-started-daemon.log)")

    # --- actions -----------------------------------------------------------------------------

    def action_help(self) -> None:
        sections: list[tuple[str, Any]] = [("Everywhere", self.BINDINGS)]
        screen = self.screen
        for cls in (ReviewScreen, HoleScreen, TrainingScreen, ModelsScreen, DriftScreen):
            title = cls.__name__.replace("Screen", "")
            if isinstance(screen, cls):
                title += " (this screen)"
            sections.append((title, cls.BINDINGS))
        self.push_screen(HelpScreen(sections))

    def action_operator(self) -> None:
        def named(name: str | None) -> None:
            if name:
                self.settings.operator = name
                try:
                    path = self.settings.save()
                except OSError as exc:
                    self.notify(f"could not save settings: {exc}", severity="error")
                    return
                self.notify(f"operator is now {name} (saved in {path})")

        self.push_screen(OperatorScreen(self.settings.operator), named)


def _job_text(job: Job | None) -> str:
    if job is None:
        return "no job"
    fraction = job.progress.fraction
    pct = f" {fraction * 100:.0f}%" if fraction is not None else ""
    return f"job {job.job_id} {job.status}{pct}"


__all__ = ["ApplianceApp"]
