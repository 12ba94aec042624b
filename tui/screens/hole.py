"""The hole screen: the trace against depth, the markers, and confirming the label."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Label, Static

from appliance.points import POINT_NAMES
from appliance.records import Estimate, Hole
from tui.client import ApiError
from tui.fields import fmt_mm, hole_drill, hole_source, hole_time, points_of
from tui.markers import COARSE_STEP_MM, FINE_STEP_MM, MarkerSet, PlotTrace, trace_from_json
from tui.screens._teardown import drop_if_torn_down
from tui.widgets.plot import POINT_COLOURS, TracePlot
from tui.widgets.status import StatusLine

if TYPE_CHECKING:
    from tui.app import ApplianceApp

LEGEND = ("[bright_cyan]⣿ torque A (axis)[/]   [magenta]⣿ thrust (own scale, g hides)[/]   "
          "[grey37]┊ step change[/]   ┆ e t x estimate   │ E T X yours")
# The daemon downsamples to this many samples (min/max preserving) for the plot.
PLOT_POINTS = 2000


class HoleScreen(Screen[None]):
    DEFAULT_CSS = """
    HoleScreen #title { height: 1; padding: 0 1; background: $boost; text-style: bold; }
    HoleScreen #panel { height: auto; padding: 0 1; }
    HoleScreen #legend { height: 1; padding: 0 1; color: $text-muted; }
    HoleScreen #message { height: auto; max-height: 3; padding: 0 1; }
    """
    BINDINGS = [
        Binding("left", "move(-1)", "◀ fine", key_display="←"),
        Binding("right", "move(1)", "fine ▶", key_display="→"),
        Binding("shift+left,left_square_bracket", "move(-20)", "◀◀ coarse", key_display="[",
                show=False),
        Binding("shift+right,right_square_bracket", "move(20)", "coarse ▶▶", key_display="]",
                show=False),
        Binding("tab,down", "cycle(1)", "Next marker", key_display="Tab", show=False),
        Binding("shift+tab,up", "cycle(-1)", "Previous marker", show=False),
        Binding("e", "select('entry')", "Entry", show=False),
        Binding("t", "select('transition')", "Transition", show=False),
        Binding("x", "select('exit')", "Exit", show=False),
        Binding("s", "snap(1)", "Snap ▶"),
        Binding("S", "snap(-1)", "◀ Snap", show=False),
        Binding("a,delete", "absent", "Absent"),
        Binding("enter", "confirm", "Confirm"),
        Binding("escape", "discard", "Discard"),
        Binding("n", "other(1)", "Next hole"),
        Binding("p", "other(-1)", "Prev hole"),
        Binding("plus,equals_sign", "zoom(0.5)", "Zoom in", key_display="+"),
        Binding("minus", "zoom(2.0)", "Zoom out", key_display="-", show=False),
        Binding("less_than_sign,comma", "pan(-0.25)", "Pan ◀", key_display="<", show=False),
        Binding("greater_than_sign,full_stop", "pan(0.25)", "Pan ▶", key_display=">",
                show=False),
        Binding("0", "reset_zoom", "Whole hole", show=False),
        Binding("g", "toggle_thrust", "Thrust on/off", show=False),
    ]

    def __init__(self, hole_ids: list[str], index: int) -> None:
        super().__init__()
        self.hole_ids = hole_ids
        self.index = max(0, min(index, len(hole_ids) - 1))
        self.hole: Hole | None = None
        self.estimate: Estimate | None = None
        self.trace: PlotTrace | None = None
        self.markers: MarkerSet | None = None

    @property
    def appliance(self) -> ApplianceApp:
        return self.app  # type: ignore[return-value]

    @property
    def hole_id(self) -> str:
        return self.hole_ids[self.index]

    def compose(self) -> ComposeResult:
        yield Label("", id="title")
        yield TracePlot(id="plot")
        yield Label(LEGEND, id="legend")
        yield Static("", id="panel")
        yield Static("", id="message")
        yield StatusLine()
        yield Footer()

    def on_mount(self) -> None:
        self.run_worker(self.load, group="hole", exclusive=True)

    @drop_if_torn_down
    async def load(self) -> None:
        client = self.appliance.client
        self.trace = None
        self.markers = None
        self.query_one("#title", Label).update(f"hole {self.hole_id} — loading…")
        try:
            hole = self.hole = await client.get_hole(self.hole_id)
            self.trace = trace_from_json(await client.get_trace(self.hole_id, PLOT_POINTS))
            estimate = self.estimate = await client.get_estimate(self.hole_id)
            labels = await client.get_labels(self.hole_id)
        except (ApiError, ValueError) as exc:
            if self.is_attached:
                self.say(f"hole {self.hole_id}: {getattr(exc, 'message', exc)}", error=True)
            return
        if not self.is_attached:  # left the screen while the daemon answered
            return
        latest = labels[-1] if labels else None
        estimated = points_of(estimate)
        self.markers = MarkerSet.start(estimated, None if latest is None else points_of(latest),
                                       self.trace.depth_range)
        est_points = {n: estimated.get(n) for n in POINT_NAMES}
        self.query_one(TracePlot).show(self.trace, self.markers, est_points)
        where = f"{self.index + 1}/{len(self.hole_ids)}"
        self.query_one("#title", Label).update(
            f"hole {self.hole_id} ({where}) · {hole_source(hole)} · {hole_time(hole)}"
            f" · drill {hole_drill(hole)} · "
            + ("labelled" if latest else "not labelled yet")
        )
        self.say("")
        self.update_panel()

    # --- the panel under the plot ------------------------------------------------------------

    def update_panel(self) -> None:
        if self.markers is None or self.estimate is None:
            return
        estimate = self.estimate
        estimated = points_of(estimate)
        table = Table(box=None, padding=(0, 2), expand=False, show_edge=False)
        for col in ("", "point", "estimate mm", "spread", "yours mm", ""):
            table.add_column(col)
        for name in POINT_NAMES:
            selected = name == self.markers.selected
            value = self.markers.values[name]
            table.add_row(
                "▶" if selected else " ",
                f"[{POINT_COLOURS[name]}]{name}[/]",
                fmt_mm(estimated.get(name)),
                fmt_mm(estimate.spread_mm.get(name), 3),
                f"[b]{fmt_mm(value)}[/b]" if value is not None else "[dim]absent[/dim]",
                "[i]moved[/i]" if name in self.markers.touched else "",
            )
        thickness = self.markers.thickness_mm
        table.add_row("", "exit − entry", "", "", f"[b]{fmt_mm(thickness)}[/b]",
                      "stack thickness")
        self.query_one("#panel", Static).update(table)
        plot = self.query_one(TracePlot)
        plot.keep_visible(self.markers.values[self.markers.selected])
        plot.refresh()

    def say(self, text: str, error: bool = False) -> None:
        self.query_one("#message", Static).update(f"[red]{text}[/]" if error else text)

    # --- actions -----------------------------------------------------------------------------

    def action_move(self, steps: int) -> None:
        if self.markers is None:
            return
        # 20 steps is the coarse move; anything else is in fine steps.
        delta = COARSE_STEP_MM * (1 if steps > 0 else -1) if abs(steps) == 20 else (
            FINE_STEP_MM * steps)
        self.markers.move(delta)
        self.update_panel()

    def action_cycle(self, delta: int) -> None:
        if self.markers is not None:
            self.markers.cycle(delta)
            self.update_panel()

    def action_select(self, name: str) -> None:
        if self.markers is not None:
            self.markers.select(name)
            self.update_panel()

    def action_snap(self, direction: int) -> None:
        if self.markers is None or self.trace is None:
            return
        target = self.markers.snap(self.trace, direction)
        if target is None:
            self.say("no half-height crossing further that way")
        else:
            self.say(f"{self.markers.selected} snapped to the crossing at {target:.2f} mm")
        self.update_panel()

    def action_absent(self) -> None:
        if self.markers is not None:
            value = self.markers.toggle_absent()
            state = "absent" if value is None else f"back at {value:.2f} mm"
            self.say(f"{self.markers.selected} {state}")
            self.update_panel()

    def action_zoom(self, factor: float) -> None:
        self.query_one(TracePlot).zoom(factor)

    def action_pan(self, fraction: float) -> None:
        self.query_one(TracePlot).pan(fraction)

    def action_reset_zoom(self) -> None:
        self.query_one(TracePlot).reset_view()

    def action_toggle_thrust(self) -> None:
        plot = self.query_one(TracePlot)
        plot.show_thrust = not plot.show_thrust
        plot.refresh()

    @drop_if_torn_down
    async def action_confirm(self) -> None:
        if self.markers is None:
            return
        problem = self.markers.problem()
        if problem:
            self.say(f"not sent: {problem}", error=True)
            return
        operator = self.appliance.settings.operator
        try:
            await self.appliance.client.put_label(self.hole_id, self.markers.points, operator)
        except ApiError as exc:
            self.say(exc.message, error=True)
            return
        self.appliance.notify(f"hole {self.hole_id}: label confirmed by {operator}")
        if self.index + 1 < len(self.hole_ids):
            self.action_other(1)
        else:
            self.dismiss()

    def action_discard(self) -> None:
        if self.markers is not None and self.markers.touched:
            self.appliance.notify(f"hole {self.hole_id}: changes discarded")
        self.dismiss()

    def action_other(self, delta: int) -> None:
        new = self.index + delta
        if not 0 <= new < len(self.hole_ids):
            self.say("no more holes that way")
            return
        self.index = new
        self.run_worker(self.load, group="hole", exclusive=True)
