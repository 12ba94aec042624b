"""The training screen: start a fine-tune or a hyperparameter search, follow its progress
and log (and a search's trials), cancel it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Footer, Input, Label, Log, ProgressBar, Static

from appliance.records import Job, JobProgress
from tui.client import ApiError, DaemonUnreachable
from tui.screens._teardown import drop_if_torn_down
from tui.widgets.status import StatusLine
from tui.widgets.training import TrialTable

if TYPE_CHECKING:
    from tui.app import ApplianceApp


def progress_fraction(job: Job) -> float | None:
    """0..1: the daemon's own fraction, and all of it once the job succeeded."""
    return 1.0 if job.status == "succeeded" else job.progress.fraction


def search_text(progress: JobProgress) -> str:
    """`search: 3/20 trials, best objective 0.412 mm` from a search job's progress."""
    total = "?" if progress.trials_total is None else progress.trials_total
    best = progress.best_objective
    best_text = "-" if best is None else f"{best:.3f} mm"
    return f"search: {progress.trials_done or 0}/{total} trials, best objective {best_text}"


class TrainingScreen(Screen[None]):
    DEFAULT_CSS = """
    TrainingScreen #form { height: 3; }
    TrainingScreen #form Label { padding: 1 1 0 1; }
    TrainingScreen #form Input { width: 8; }
    TrainingScreen #job { height: auto; max-height: 3; padding: 0 1; margin-top: 1;
                       text-style: bold; }
    TrainingScreen #detail { height: 1; padding: 0 1; }
    TrainingScreen ProgressBar { padding: 0 1; }
    TrainingScreen #trial_table { height: auto; max-height: 12; display: none; }
    TrainingScreen #trial_table.search { display: block; }
    TrainingScreen Log { height: 1fr; border: round $panel-lighten-2; }
    """
    BINDINGS = [
        Binding("ctrl+g", "start", "Start fine-tune"),
        Binding("ctrl+t", "search", "Start search"),
        Binding("ctrl+k", "cancel", "Cancel job"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.job: Job | None = None
        self.folds = 2
        self.epochs = 1
        self.trials = 20
        self._last_log: str | None = None
        self.events_seen = 0  # server-sent events received for the followed job

    @property
    def appliance(self) -> ApplianceApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        with Horizontal(id="form"):
            yield Label("folds")
            yield Input(str(self.folds), type="integer", id="folds")
            yield Label("epochs")
            yield Input(str(self.epochs), type="integer", id="epochs")
            yield Checkbox("head only", value=False, id="head_only")
            yield Button("Start (ctrl+g)", variant="primary", id="start")
            yield Label("trials")
            yield Input(str(self.trials), type="integer", id="trials")
            yield Button("Search (ctrl+t)", variant="primary", id="search")
            yield Button("Cancel job (ctrl+k)", variant="error", id="cancel")
        yield Static("no job running", id="job")
        yield ProgressBar(total=100, show_eta=False, id="progress")
        yield Label("", id="detail")
        yield TrialTable(id="trial_table")
        yield Log(id="log", max_lines=500)
        yield StatusLine()
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#start", Button).focus()
        self.run_worker(self.attach_running, group="attach", exclusive=True)

    @drop_if_torn_down
    async def attach_running(self) -> None:
        try:
            jobs = await self.appliance.client.list_jobs()
        except ApiError as exc:
            self.query_one("#detail", Label).update(f"[red]{exc.message}[/]")
            return
        running = [j for j in jobs if not j.ended]
        # The daemon lists jobs newest first.
        if running:
            self.follow(running[0])
        elif jobs:
            self.show_job(jobs[0])

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start":
            self.action_start()
        elif event.button.id == "search":
            self.action_search()
        elif event.button.id == "cancel":
            self.action_cancel()

    def _int(self, widget_id: str, low: int, high: int) -> int | None:
        raw = self.query_one(f"#{widget_id}", Input).value.strip()
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            self.query_one("#detail", Label).update(
                f"[red]{widget_id} must be a whole number from {low} to {high}[/]"
            )
            return None
        return value

    def action_start(self) -> None:
        folds, epochs = self._int("folds", 2, 20), self._int("epochs", 1, 1000)
        if folds is None or epochs is None:
            return
        head_only = self.query_one("#head_only", Checkbox).value
        self.run_worker(partial(self.start, folds, epochs, head_only), group="start",
                        exclusive=True)

    @drop_if_torn_down
    async def start(self, folds: int, epochs: int, head_only: bool) -> None:
        self.folds, self.epochs = folds, epochs
        try:
            job = await self.appliance.client.start_fine_tune(folds, epochs, head_only)
        except ApiError as exc:
            self.query_one("#detail", Label).update(f"[red]{exc.message}[/]")
            return
        self.started(job, "fine-tune")

    def action_search(self) -> None:
        trials = self._int("trials", 1, 500)
        folds, epochs = self._int("folds", 2, 24), self._int("epochs", 1, 1000)
        if trials is None or folds is None or epochs is None:
            return
        self.run_worker(partial(self.start_search, trials, folds, epochs), group="start",
                        exclusive=True)

    @drop_if_torn_down
    async def start_search(self, trials: int, folds: int, epochs: int) -> None:
        self.folds, self.epochs = folds, epochs
        try:
            job = await self.appliance.client.start_tune(trials, folds, epochs)
        except ApiError as exc:
            self.query_one("#detail", Label).update(f"[red]{exc.message}[/]")
            return
        self.started(job, "search")

    def started(self, job: Job, what: str) -> None:
        self.query_one(Log).clear()
        self._last_log = None
        self.query_one(TrialTable).show([])  # a new job: nothing of the last search
        self.appliance.notify(f"{what} job {job.job_id} started")
        self.follow(job)

    def follow(self, job: Job) -> None:
        self.folds = job.params.folds or self.folds
        self.epochs = job.params.epochs or self.epochs
        self.show_job(job)
        self.run_worker(partial(self.watch_job, job.job_id), group="watch", exclusive=True)

    @drop_if_torn_down
    async def watch_job(self, jid: str) -> None:
        """Follow the event stream; when it drops, poll the job until it ends."""
        client = self.appliance.client
        try:
            async for job in client.job_events(jid):
                # each event carries the whole job (`job` at each change, `end` last)
                if not self.is_attached:
                    return
                self.events_seen += 1
                self.show_job(job)
                if job.ended:
                    return
        except ApiError as exc:
            self.query_one(Log).write_line(f"event stream: {exc.message}; polling instead")
        while self.is_attached:
            try:
                job = await client.get_job(jid)
            except DaemonUnreachable as exc:
                self.query_one("#detail", Label).update(f"[red]{exc.message} — retrying[/]")
                await asyncio.sleep(1.0)
                continue
            except ApiError as exc:
                self.query_one("#detail", Label).update(f"[red]{exc.message}[/]")
                return
            if not self.is_attached:
                return
            self.show_job(job)
            if job.ended:
                return
            await asyncio.sleep(1.0)

    def show_job(self, job: Job) -> None:
        self.job = job
        progress = job.progress
        self.folds = progress.folds or self.folds
        self.epochs = progress.epochs or self.epochs
        text = f"job {job.job_id}: {job.status}"
        if job.error:
            text += f" — {job.error}"
        if job.candidate_version:
            text += f" · candidate {job.candidate_version}"
        if progress.gate_passed is not None:
            text += " · gates " + ("passed" if progress.gate_passed else
                                   "FAILED " + ", ".join(progress.failing_gates or ()))
        if progress.activated:
            text += " · activated"
        if job.is_search:
            text += " · " + search_text(progress)
        self.query_one("#job", Static).update(text)
        self.query_one(TrialTable).set_class(job.is_search, "search")
        if job.is_search:
            # each change of a search's job is a trial ended (or the end): read them again
            self.run_worker(partial(self.load_trials, job.job_id), group="trials",
                            exclusive=True)
        fraction = progress_fraction(job)
        if fraction is not None:
            self.query_one(ProgressBar).update(progress=round(100 * fraction, 1))
        detail = []
        # the trainer counts folds and epochs from 0; operators count from 1
        if progress.fold is not None:
            detail.append(f"fold {min(progress.fold + 1, self.folds)}/{self.folds}")
        if progress.epoch is not None:
            detail.append(f"epoch {min(progress.epoch + 1, self.epochs)}/{self.epochs}")
        if progress.eta_s is not None and not job.ended:
            detail.append(f"ETA {progress.eta_s:.0f} s")
        for name, loss in (("train loss", progress.train_loss), ("val loss", progress.val_loss)):
            if loss is not None:
                detail.append(f"{name} {loss:.4g}")
        if detail:
            self.query_one("#detail", Label).update(" · ".join(detail))
        self.write_tail(job.log_tail)

    @drop_if_torn_down
    async def load_trials(self, jid: str) -> None:
        try:
            trials = await self.appliance.client.list_trials(jid)
        except ApiError as exc:
            self.query_one("#detail", Label).update(f"[red]{exc.message}[/]")
            return
        if self.job is None or self.job.job_id != jid:
            return  # another job is followed by now
        self.query_one(TrialTable).show(trials, self.job.progress.best_trial)

    def write_tail(self, lines: Sequence[str]) -> None:
        """Append the lines of a sliding log tail that are not on screen yet."""
        if not lines:
            return
        start = 0
        if self._last_log is not None and self._last_log in lines:
            start = len(lines) - lines[::-1].index(self._last_log)
        log = self.query_one(Log)
        for line in lines[start:]:
            log.write_line(line)
        self._last_log = lines[-1]

    def action_cancel(self) -> None:
        if self.job is None or self.job.ended:
            self.query_one("#detail", Label).update("no running job to cancel")
            return
        self.run_worker(partial(self.cancel, self.job.job_id), group="cancel", exclusive=True)

    @drop_if_torn_down
    async def cancel(self, jid: str) -> None:
        try:
            await self.appliance.client.cancel_job(jid)
        except ApiError as exc:
            self.query_one("#detail", Label).update(f"[red]{exc.message}[/]")
            return
        self.appliance.notify(f"job {jid}: cancel requested")
