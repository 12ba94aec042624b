"""The drift screen: each drill's drift watch, its signals against their thresholds, and an
operator's reset (acknowledging an alarm restarts the drill's reference)."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label, Static

from appliance.records import DrillDrift
from tui.client import ApiError
from tui.screens._teardown import drop_if_torn_down
from tui.screens.dialogs import ConfirmScreen
from tui.widgets.drift import DrillTable, SignalBars
from tui.widgets.status import StatusLine

if TYPE_CHECKING:
    from tui.app import ApplianceApp

NO_WATCH = "this daemon has no drift watch (GET /drift answers 404: it predates issue 14)"


def summary_text(drills: list[DrillDrift]) -> Text:
    alarms = sum(d.state == "alarm" for d in drills)
    learning = sum(d.state == "learning" for d in drills)
    text = Text(f"{len(drills)} drill{'s' if len(drills) != 1 else ''}")
    if alarms:
        text.append(f" · {alarms} in alarm", style="bold dark_orange")
    if learning:
        text.append(f" · {learning} learning their reference", style="dim")
    return text


def reset_question(d: DrillDrift) -> str:
    what = (f"acknowledge its alarm (raised at hole {d.alarm_at_hole}) and "
            if d.state == "alarm" else "")
    return (f"Reset the drift watch of drill {d.drill}? This will {what}learn its reference "
            "again from its next holes. The reset is audited.")


class DriftScreen(Screen[None]):
    DEFAULT_CSS = """
    DriftScreen #summary { height: 1; padding: 0 1; background: $boost; text-style: bold; }
    DriftScreen DrillTable { height: 1fr; min-height: 4; }
    DriftScreen #signals_title { height: 1; padding: 0 1; margin-top: 1; text-style: bold; }
    DriftScreen #message { height: auto; max-height: 3; padding: 0 1; }
    """
    BINDINGS = [
        Binding("enter", "review_drill", "Review its holes"),
        Binding("R", "reset", "Reset drill"),
        Binding("r", "reload", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.drills: list[DrillDrift] = []
        self.served: bool | None = None  # None: not asked yet; False: no /drift there
        self._failed = False  # the last load's error is on screen

    @property
    def appliance(self) -> ApplianceApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Label("drift watch — loading…", id="summary")
        yield DrillTable(id="drills")
        yield Label("", id="signals_title")
        yield SignalBars(id="bars")
        yield Static("", id="message")
        yield StatusLine()
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DrillTable).focus()
        self.set_interval(self.appliance.refresh_s, self.reload_quietly)
        self.action_reload()

    def on_screen_resume(self) -> None:
        self.action_reload()

    def reload_quietly(self) -> None:
        if self.is_current:
            self.action_reload()

    def action_reload(self) -> None:
        self.run_worker(self.load, group="load", exclusive=True)

    def say(self, text: str, error: bool = False) -> None:
        self.query_one("#message", Static).update(Text(text, style="red" if error else ""))

    @drop_if_torn_down
    async def load(self) -> None:
        try:
            drills = await self.appliance.client.drift()
        except ApiError as exc:
            if self.is_attached:
                self.say(exc.message, error=True)
                self._failed = True
            return
        if not self.is_attached:
            return
        if self._failed:  # the daemon answers again: its old error no longer holds
            self.say("")
            self._failed = False
        self.served = drills is not None
        self.drills = drills or []
        summary = self.query_one("#summary", Label)
        if drills is None:
            summary.update(Text(NO_WATCH, style="dim"))
        elif not drills:
            summary.update("no drill seen yet: the watch starts with the first hole")
        else:
            summary.update(summary_text(drills))
        self.query_one(DrillTable).show(self.drills)
        self.show_signals()

    def selected(self) -> DrillDrift | None:
        drill = self.query_one(DrillTable).selected_drill()
        return next((d for d in self.drills if d.drill == drill), None)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_signals()

    def show_signals(self) -> None:
        d = self.selected()
        title = self.query_one("#signals_title", Label)
        if d is None:
            title.update("")
            self.query_one(SignalBars).show(None, "" if not self.served else "no drill selected")
            return
        # what the daemon serves is each statistic now; it keeps no history of them
        title.update(Text.assemble(
            f"Signals of drill {d.drill}: ",
            ("CUSUM statistic now against its threshold ┃ (alarm above it; holds until reset)",
             "dim"),
        ))
        self.query_one(SignalBars).show(d)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_review_drill()

    def action_review_drill(self) -> None:
        """The review queue, filtered to the selected drill: what operators confirm there is
        what a fine-tune after an alarm learns from."""
        d = self.selected()
        if d is None:
            return
        from tui.screens.review import ReviewScreen

        self.app.switch_mode("review")
        review = next((s for s in self.app.screen_stack if isinstance(s, ReviewScreen)), None)
        if review is not None:
            review.set_drill(d.drill)

    def action_reset(self) -> None:
        d = self.selected()
        if d is None:
            self.say("no drill to reset")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(partial(self.reset, d.drill), group="reset", exclusive=True)

        self.app.push_screen(ConfirmScreen(reset_question(d)), answered)

    @drop_if_torn_down
    async def reset(self, drill: str) -> None:
        try:
            after = await self.appliance.client.reset_drift(drill)
        except ApiError as exc:
            self.say(f"refused: {exc.message}", error=True)
            return
        self.say(f"drill {after.drill} reset at hole {after.holes}: {after.state} again")
        self.appliance.notify(f"drift watch of drill {drill} reset")
        await self.load()
        await self.appliance.poll_status()  # the status line drops the alarm now, not later
