"""The training screen: start a fine-tune or a hyperparameter search, follow its progress
and log (and a search's trials), cancel it."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Footer, Input, Label, Log, ProgressBar, Static

from tui.client import ApiError, DaemonUnreachable
from tui.fields import job_id, job_is_running
from tui.screens._teardown import drop_if_torn_down
from tui.widgets.status import StatusLine
from tui.widgets.training import TrialTable

if TYPE_CHECKING:
    from tui.app import ApplianceApp

SEARCH_KIND = "tune"  # the daemon's kind of a hyperparameter search job
FINISHED = {"succeeded", "success", "done", "completed", "failed", "error", "cancelled",
            "canceled", "rejected"}


def progress_fraction(event: dict[str, Any], folds: int, epochs: int) -> float | None:
    """0..1 from an event: the daemon's own `progress`, else fold and epoch counts."""
    for key in ("progress", "fraction"):
        value = event.get(key)
        if isinstance(value, (int, float)):
            return float(value) / 100 if value > 1 else float(value)
        if isinstance(value, dict):
            nested = progress_fraction(value, folds, epochs)
            if nested is not None:
                return nested
    fold, epoch = event.get("fold"), event.get("epoch")
    if isinstance(fold, int) and isinstance(epoch, int) and folds > 0 and epochs > 0:
        # fold and epoch are 0- or 1-based depending on the trainer; clamp either way.
        done = min(folds, max(0, fold - (1 if fold >= 1 else 0))) * epochs + min(epoch, epochs)
        return min(1.0, done / (folds * epochs))
    if str(event.get("event") or event.get("status", "")).lower() in {"done", "succeeded"}:
        return 1.0
    return None


def search_text(progress: dict[str, Any]) -> str:
    """`search: 3/20 trials, best objective 0.412 mm` from a search job's progress."""
    done, total = progress.get("trials_done"), progress.get("trials_total")
    best = progress.get("best_objective")
    best_text = f"{best:.3f} mm" if isinstance(best, (int, float)) else "-"
    return (f"search: {done if isinstance(done, int) else 0}/"
            f"{total if isinstance(total, int) else '?'} trials, best objective {best_text}")


def describe_event(event: dict[str, Any]) -> str:
    kind = event.get("event") or event.get("status") or "event"
    parts = [str(kind)]
    for key in ("fold", "epoch", "train_loss", "val_loss", "eta_s", "message", "reason",
                "error"):
        value = event.get(key)
        if value is None:
            continue
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


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
        self.job: dict[str, Any] | None = None
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
        running = [j for j in jobs if job_is_running(j)]
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

    def started(self, job: dict[str, Any], what: str) -> None:
        self.query_one(Log).clear()
        self._last_log = None
        self.query_one(TrialTable).show([])  # a new job: nothing of the last search
        self.appliance.notify(f"{what} job {job_id(job)} started")
        self.follow(job)

    def follow(self, job: dict[str, Any]) -> None:
        params = job.get("params") or job.get("parameters") or {}
        self.folds = int(params.get("folds", self.folds) or self.folds)
        self.epochs = int(params.get("epochs", self.epochs) or self.epochs)
        self.show_job(job)
        self.run_worker(partial(self.watch_job, job_id(job)), group="watch", exclusive=True)

    @drop_if_torn_down
    async def watch_job(self, jid: Any) -> None:
        """Follow the event stream; when it drops, poll the job until it ends."""
        client = self.appliance.client
        try:
            async for event in client.job_events(jid):
                # Each event carries the whole job (`job` at each change, `end` last).
                if not self.is_attached:
                    return
                self.events_seen += 1
                if "status" in event:
                    self.show_job(event)
                else:
                    self.on_job_event(event)
                if str(event.get("status", "")).lower() in FINISHED or event.get("event") in {
                    "done", "error", "end"
                }:
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
            if not job_is_running(job):
                return
            await asyncio.sleep(1.0)

    def on_job_event(self, event: dict[str, Any]) -> None:
        self.query_one(Log).write_line(describe_event(event))
        fraction = progress_fraction(event, self.folds, self.epochs)
        if fraction is not None:
            self.query_one(ProgressBar).update(progress=round(100 * fraction, 1))
        detail = []
        if isinstance(event.get("fold"), int):
            detail.append(f"fold {min(event['fold'] + 1, self.folds)}/{self.folds}")
        if isinstance(event.get("epoch"), int):
            detail.append(f"epoch {min(event['epoch'] + 1, self.epochs)}/{self.epochs}")
        if isinstance(event.get("eta_s"), (int, float)):
            detail.append(f"ETA {event['eta_s']:.0f} s")
        if detail:
            self.query_one("#detail", Label).update(" · ".join(detail))

    def show_job(self, job: dict[str, Any]) -> None:
        self.job = job
        progress = job.get("progress") if isinstance(job.get("progress"), dict) else {}
        self.folds = int(progress.get("folds") or self.folds)
        self.epochs = int(progress.get("epochs") or self.epochs)
        status = str(job.get("status", "?"))
        reason = job.get("error") or job.get("reason")
        text = f"job {job_id(job)}: {status}"
        if reason:
            text += f" — {reason}"
        if job.get("candidate_version"):
            text += f" · candidate {job['candidate_version']}"
        if progress.get("gate_passed") is not None:
            text += " · gates " + ("passed" if progress["gate_passed"] else
                                   "FAILED " + ", ".join(progress.get("failing_gates") or []))
        if progress.get("activated"):
            text += " · activated"
        search = job.get("kind") == SEARCH_KIND
        if search:
            text += " · " + search_text(progress)
        self.query_one("#job", Static).update(text)
        self.query_one(TrialTable).set_class(search, "search")
        if search:
            # each change of a search's job is a trial ended (or the end): read them again
            self.run_worker(partial(self.load_trials, job_id(job)), group="trials",
                            exclusive=True)
        fraction = progress_fraction(job, self.folds, self.epochs)
        if status.lower() in {"succeeded", "success", "done", "completed"}:
            fraction = 1.0
        if fraction is not None:
            self.query_one(ProgressBar).update(progress=round(100 * fraction, 1))
        detail = []
        # the trainer counts folds and epochs from 0; operators count from 1
        if isinstance(progress.get("fold"), int):
            detail.append(f"fold {min(progress['fold'] + 1, self.folds)}/{self.folds}")
        if isinstance(progress.get("epoch"), int):
            detail.append(f"epoch {min(progress['epoch'] + 1, self.epochs)}/{self.epochs}")
        eta = progress.get("eta_s")
        if isinstance(eta, (int, float)) and job_is_running(job):
            detail.append(f"ETA {eta:.0f} s")
        for key in ("train_loss", "val_loss"):
            if isinstance(progress.get(key), (int, float)):
                detail.append(f"{key.replace('_', ' ')} {progress[key]:.4g}")
        if detail:
            self.query_one("#detail", Label).update(" · ".join(detail))
        self.write_tail(job.get("log_tail") or [])

    @drop_if_torn_down
    async def load_trials(self, jid: Any) -> None:
        try:
            trials = await self.appliance.client.list_trials(jid)
        except ApiError as exc:
            self.query_one("#detail", Label).update(f"[red]{exc.message}[/]")
            return
        if self.job is None or job_id(self.job) != jid:
            return  # another job is followed by now
        progress = self.job.get("progress") if isinstance(self.job.get("progress"), dict) else {}
        best = progress.get("best_trial")
        self.query_one(TrialTable).show(trials, best if isinstance(best, int) else None)

    def write_tail(self, tail: list[Any] | str) -> None:
        """Append the lines of a sliding log tail that are not on screen yet."""
        lines = tail.splitlines() if isinstance(tail, str) else [str(x) for x in tail]
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
        if self.job is None or not job_is_running(self.job):
            self.query_one("#detail", Label).update("no running job to cancel")
            return
        self.run_worker(partial(self.cancel, job_id(self.job)), group="cancel", exclusive=True)

    @drop_if_torn_down
    async def cancel(self, jid: Any) -> None:
        try:
            await self.appliance.client.cancel_job(jid)
        except ApiError as exc:
            self.query_one("#detail", Label).update(f"[red]{exc.message}[/]")
            return
        self.appliance.notify(f"job {jid}: cancel requested")
