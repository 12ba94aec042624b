"""The models screen: versions, gates, the active model's live accuracy, activation with
confirmation, rollback, history."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label, Static

from appliance.records import ModelDetail, ModelSummary
from tui.client import ApiError
from tui.fields import fmt_mm
from tui.screens._teardown import drop_if_torn_down
from tui.screens.dialogs import ConfirmScreen, ReasonScreen
from tui.widgets.accuracy import LiveAccuracyView
from tui.widgets.status import StatusLine

if TYPE_CHECKING:
    from tui.app import ApplianceApp

MODEL_COLUMNS = ("", "version", "status", "parent", "created", "MAE entry", "MAE trans",
                 "MAE exit", "gates")
HISTORY_COLUMNS = ("when", "action", "version", "previous", "by", "reason")


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested metrics -> {"a.b.c": value}, so a metric is found whatever the nesting."""
    if not isinstance(obj, dict):
        return {prefix: obj}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def metric(model: ModelSummary, point: str) -> str:
    """A point's mean absolute error from the model's metrics, wherever it is nested."""
    for key, value in flatten(model.metrics).items():
        lowered = key.lower()
        if "mae" in lowered and point in lowered and isinstance(value, (int, float)) \
                and not isinstance(value, bool):
            return fmt_mm(value, 3)
    return "-"


def gates_summary(model: ModelSummary) -> str:
    if model.gate_passed is None:
        return "-"
    return "pass" if model.gate_passed else "FAIL"


def gate_lines(detail: ModelDetail) -> list[str]:
    """Which gate said what of a version, and why it was set aside if it was."""
    report = detail.gate_report
    compared = report.compared_with if report else None
    lines = [f"{detail.model.version}: gates {gates_summary(detail.model)}"
             + (f" (compared with {compared})" if compared else "")]
    for gate in report.gates if report else ():
        colour = {"pass": "green", "fail": "red"}.get(gate.status, "yellow")
        lines.append(f"  [{colour}]{gate.gate}: {gate.status}[/] — {gate.summary}")
    if report is None or not report.gates:
        lines.append("  not gated yet")
    for name, note in (("rejected", report and report.rejected),
                       ("removed", report and report.removed)):
        if note:
            lines.append(f"  [red]{name}[/] by {note.by}: {note.why}")
    return lines


class ModelsScreen(Screen[None]):
    DEFAULT_CSS = """
    ModelsScreen #models { height: 2fr; }
    ModelsScreen #live { margin-bottom: 1; }
    ModelsScreen #detail { height: auto; max-height: 8; padding: 0 1; color: $text-muted; }
    ModelsScreen #history_title { padding: 0 1; text-style: bold; }
    ModelsScreen #history { height: 1fr; }
    ModelsScreen #message { height: auto; max-height: 3; padding: 0 1; }
    """
    BINDINGS = [
        Binding("a", "activate", "Activate"),
        Binding("F", "force", "Force activate"),
        Binding("b", "rollback", "Roll back"),
        Binding("r", "reload", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.models: list[ModelSummary] = []
        self.active = "-"

    @property
    def appliance(self) -> ApplianceApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield DataTable(id="models", cursor_type="row")
        yield LiveAccuracyView("", id="live")
        yield Static("", id="detail")
        yield Label("Activation history", id="history_title")
        yield DataTable(id="history", cursor_type="row", zebra_stripes=True)
        yield Static("", id="message")
        yield StatusLine()
        yield Footer()

    def on_mount(self) -> None:
        for col in MODEL_COLUMNS:
            self.query_one("#models", DataTable).add_column(col, key=col or "mark")
        for col in HISTORY_COLUMNS:
            self.query_one("#history", DataTable).add_column(col, key=col)
        self.query_one("#models", DataTable).focus()
        self.action_reload()

    def on_screen_resume(self) -> None:
        self.action_reload()

    def say(self, text: str, error: bool = False) -> None:
        self.query_one("#message", Static).update(f"[red]{text}[/]" if error else text)

    def action_reload(self) -> None:
        self.run_worker(self.load, group="load", exclusive=True)

    @drop_if_torn_down
    async def load(self) -> None:
        client = self.appliance.client
        try:
            self.models = await client.list_models()
            active = await client.active_model()
            events = await client.activations(limit=100)
        except ApiError as exc:
            if self.is_attached:
                self.say(exc.message, error=True)
            return
        if not self.is_attached:
            return
        self.active = "-" if active is None else active.model.version
        self.query_one(LiveAccuracyView).show(
            self.active, None if active is None else active.live,
            served=active is not None and active.served)
        table = self.query_one("#models", DataTable)
        cursor = table.cursor_row
        table.clear()
        for m in self.models:
            style = "bold green" if m.active else ""
            cells = (
                "●" if m.active else "",
                m.version,
                m.status,
                m.parent or "-",
                (m.created_at or "-").replace("T", " ")[:19],
                metric(m, "entry"),
                metric(m, "transition"),
                metric(m, "exit"),
                gates_summary(m),
            )
            table.add_row(*(Text(c, style=style) for c in cells), key=m.version)
        if self.models:
            table.move_cursor(row=min(cursor or 0, len(self.models) - 1))
        history = self.query_one("#history", DataTable)
        history.clear()
        for e in events:
            history.add_row(e.at.replace("T", " ")[:19], e.action, e.version,
                            e.previous_version or "-", e.actor, e.reason or "")
        self.show_detail()

    def selected(self) -> ModelSummary | None:
        table = self.query_one("#models", DataTable)
        if not self.models or table.cursor_row is None:
            return None
        return self.models[min(table.cursor_row, len(self.models) - 1)]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "models":
            self.show_detail()

    def show_detail(self) -> None:
        model = self.selected()
        if model is None:
            self.query_one("#detail", Static).update("no model versions")
            return
        self.query_one("#detail", Static).update(f"{model.version}: gates {gates_summary(model)}")
        self.run_worker(partial(self.load_detail, model.version), group="detail",
                        exclusive=True)

    @drop_if_torn_down
    async def load_detail(self, version: str) -> None:
        """The gate report of the highlighted version: which gate said what."""
        try:
            detail = await self.appliance.client.get_model(version)
        except ApiError as exc:
            if self.is_attached:
                self.query_one("#detail", Static).update(f"[red]{exc.message}[/]")
            return
        if not self.is_attached:
            return
        self.query_one("#detail", Static).update("\n".join(gate_lines(detail)))

    def action_activate(self) -> None:
        model = self.selected()
        if model is None:
            return
        version = model.version
        if version == self.active:
            self.say(f"{version} is already active")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(partial(self.activate, version, False, None), group="act",
                                exclusive=True)

        self.app.push_screen(ConfirmScreen(f"Activate model {version}? It will serve every new "
                                           "estimate."), answered)

    def action_force(self) -> None:
        model = self.selected()
        if model is None:
            return
        version = model.version

        def reasoned(reason: str | None) -> None:
            if reason:
                self.run_worker(partial(self.activate, version, True, reason), group="act",
                                exclusive=True)

        self.app.push_screen(
            ReasonScreen(f"Force {version} past its failed gates. Why? (audited)"), reasoned
        )

    @drop_if_torn_down
    async def activate(self, version: str, force: bool, reason: str | None) -> None:
        try:
            await self.appliance.client.activate(version, force=force, reason=reason)
        except ApiError as exc:
            hint = "" if force else " (F forces it with a typed reason)"
            self.say(f"refused: {exc.message}{hint}", error=True)
            return
        self.say(f"{version} is now active")
        self.appliance.notify(f"model {version} activated")
        await self.load()
        await self.appliance.poll_status()

    def action_rollback(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(self.rollback, group="act",
                                exclusive=True)

        self.app.push_screen(
            ConfirmScreen(f"Roll back from {self.active} to the previously active model?"),
            answered,
        )

    @drop_if_torn_down
    async def rollback(self) -> None:
        try:
            operator = self.appliance.settings.operator
            await self.appliance.client.rollback(reason=f"rollback by {operator}")
        except ApiError as exc:
            self.say(f"refused: {exc.message}", error=True)
            return
        await self.load()
        self.say(f"rolled back; {self.active} is active")
        self.appliance.notify(f"rolled back to {self.active}")
        await self.appliance.poll_status()
