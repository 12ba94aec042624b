"""The review queue (start screen): holes to confirm, most likely wrong first; all drills or
one drill's."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.coordinate import Coordinate
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Label, Select

from appliance.records import DrillDrift, Hole
from tui.client import ApiError
from tui.fields import HOLE_COLUMNS, hole_row
from tui.screens._teardown import drop_if_torn_down
from tui.screens.dialogs import PickScreen
from tui.widgets.status import StatusLine

if TYPE_CHECKING:
    from tui.app import ApplianceApp

FILTERS = (("unlabelled", "Unlabelled"), ("labelled", "Labelled"), ("all", "All"))
# Unlabelled holes are asked for as the daemon's needs-review list, in its order: never
# estimated first, then by review priority (the chance the estimate is wrong), highest first.
STATUS = {"unlabelled": "needs-review", "labelled": "labelled", "all": "all"}


def parse_since(text: str) -> str | None:
    """The operator's 'since' (a date, or date and time) as ISO 8601; ValueError if not one."""
    text = text.strip()
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace(" ", "T", 1)).isoformat()
    except ValueError as exc:
        raise ValueError(f"since: {text!r} is not a date like 2026-11-28 or 2026-11-28 14:30") \
            from exc


def drill_choices(drills: list[DrillDrift]) -> list[tuple[Text, str]]:
    """The drill filter's choices: every drill, those in drift alarm first (their holes are
    the ones a fine-tune needs confirmed), then by serial; "" clears the filter."""
    choices = [(Text("all drills (no filter)"), "")]
    for d in sorted(drills, key=lambda d: (d.state != "alarm", d.drill)):
        shown = Text(d.drill, style="bold")
        if d.state == "alarm":
            at = f" since hole {d.alarm_at_hole}" if d.alarm_at_hole is not None else ""
            shown.append(f"  drift alarm{at}", style="dark_orange")
        else:
            shown.append(f"  {d.state}, {d.holes} holes", style="dim")
        choices.append((shown, d.drill))
    return choices


class ReviewScreen(Screen[None]):
    DEFAULT_CSS = """
    ReviewScreen #filters { height: 3; }
    ReviewScreen #filters Label { padding: 1 1 0 1; }
    ReviewScreen #filter { width: 20; }
    ReviewScreen #since { width: 28; }
    ReviewScreen #drill { display: none; text-style: bold; color: $warning; }
    ReviewScreen #drill.filtered { display: block; }
    ReviewScreen #count { padding: 1 2 0 2; color: $text-muted; }
    ReviewScreen DataTable { height: 1fr; }
    """
    BINDINGS = [
        Binding("enter", "open_hole", "Open hole", show=True),
        Binding("f", "cycle_filter", "Filter"),
        Binding("slash", "focus_since", "Since", key_display="/"),
        Binding("d", "pick_drill", "Drill"),
        Binding("r", "reload", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.filter = "unlabelled"
        self.since: str | None = None
        self.drill: str | None = None  # only this drill's holes; None: every drill's
        self.holes: list[Hole] = []
        self._loading = False

    @property
    def appliance(self) -> ApplianceApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        with Horizontal(id="filters"):
            yield Label("Show")
            yield Select(
                [(label, value) for value, label in FILTERS],
                value=self.filter, allow_blank=False, id="filter",
            )
            yield Label("since")
            yield Input(placeholder="YYYY-MM-DD[ HH:MM]", id="since")
            # shown only while filtered: a narrow terminal keeps the count in view otherwise
            yield Label("", id="drill")
            yield Label("", id="count")
        table: DataTable[str] = DataTable(id="holes", cursor_type="row", zebra_stripes=True)
        yield table
        yield StatusLine()
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for col in HOLE_COLUMNS:
            table.add_column(col, key=col)
        table.focus()
        self.set_interval(self.appliance.refresh_s, self.reload_quietly)
        self.run_worker(self.load, group="load", exclusive=True)

    def on_screen_resume(self) -> None:
        self.run_worker(self.load, group="load", exclusive=True)

    @drop_if_torn_down
    async def load(self) -> None:
        if self._loading:
            return
        self._loading = True
        try:
            holes = await self.appliance.client.list_holes(STATUS[self.filter], self.since,
                                                           drill=self.drill)
        except ApiError as exc:
            self.query_one("#count", Label).update(f"[red]{exc.message}[/]")
            return
        finally:
            self._loading = False
        if not self.is_attached:  # the app closed while the daemon answered
            return
        self.show_holes(holes)
        self.appliance.mark_holes_seen()

    def show_holes(self, holes: list[Hole]) -> None:
        table = self.query_one(DataTable)
        keep = None
        if table.row_count and table.cursor_row is not None:
            try:
                keep = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
            except Exception:  # noqa: BLE001 - a row that vanished keeps no cursor
                keep = None
        self.holes = holes
        table.clear()
        for hole in holes:
            table.add_row(*hole_row(hole), key=hole.hole_id)
        if keep is not None:
            try:
                table.move_cursor(row=table.get_row_index(keep))
            except Exception:  # noqa: BLE001 - the hole left this filter
                pass
        n = len(holes)
        self.query_one("#count", Label).update(
            f"{n} hole{'s' if n != 1 else ''} · most likely wrong first"
        )

    def reload_quietly(self) -> None:
        if self.is_current:
            self.run_worker(self.load, group="load", exclusive=True)

    def action_reload(self) -> None:
        self.run_worker(self.load, group="load", exclusive=True)

    def action_cycle_filter(self) -> None:
        values = [v for v, _ in FILTERS]
        self.query_one("#filter", Select).value = values[
            (values.index(self.filter) + 1) % len(values)
        ]

    def action_pick_drill(self) -> None:
        self.run_worker(self.pick_drill, group="drill", exclusive=True)

    @drop_if_torn_down
    async def pick_drill(self) -> None:
        """Ask which drill, from the drills the daemon's drift watch has seen."""
        try:
            drills = await self.appliance.client.drift()
        except ApiError as exc:
            self.query_one("#count", Label).update(Text(exc.message, style="red"))
            return
        if drills is None:
            self.appliance.notify("this daemon has no drift watch (GET /drift): it cannot "
                                  "list the drills to filter by", severity="warning")
            return

        def picked(choice: str | None) -> None:
            if choice is not None:  # Esc keeps the filter as it is
                self.set_drill(choice or None)

        self.app.push_screen(PickScreen("Show the holes of which drill?", drill_choices(drills),
                                        self.drill or ""), picked)

    def set_drill(self, drill: str | None) -> None:
        """Filter the queue to one drill's holes (None: every drill's)."""
        self.drill = drill
        label = self.query_one("#drill", Label)
        # a serial is free text: shown as Text, never read as markup
        label.update(Text(f"drill {drill}" if drill is not None else ""))
        label.set_class(drill is not None, "filtered")
        self.action_reload()

    def action_focus_since(self) -> None:
        self.query_one("#since", Input).focus()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "filter" and isinstance(event.value, str):
            self.filter = event.value
            self.action_reload()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "since":
            try:
                self.since = parse_since(event.value)
            except ValueError as exc:
                self.query_one("#count", Label).update(f"[red]{exc}[/]")
                return
            self.query_one(DataTable).focus()
            self.action_reload()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.open_row(event.cursor_row)

    def action_open_hole(self) -> None:
        table = self.query_one(DataTable)
        if table.row_count:
            self.open_row(table.cursor_row)

    def open_row(self, index: int) -> None:
        if not self.holes:
            return
        from tui.screens.hole import HoleScreen

        ids = [h.hole_id for h in self.holes]
        self.app.push_screen(HoleScreen(ids, index))
