"""The drift screen's widgets: the table of drills and the braille bars of one drill's signals.

GET /drift serves each signal's CUSUM statistic as it is now, not its history, so the bars
show exactly that: where each statistic stands against its threshold. A history collected
by polling would start when the TUI did and miss the rise that raised the alarm (it happens
while nobody watches), and would suggest a record the daemon does not keep.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.coordinate import Coordinate
from textual.geometry import Size
from textual.widget import Widget
from textual.widgets import DataTable

from appliance.records import DriftSignal, DrillDrift

DRILL_COLUMNS = ("drill", "state", "holes", "alarm at hole", "since", "signals in alarm")
STATE_STYLES = {"alarm": "bold black on dark_orange", "ok": "green", "learning": "dim"}

# A bar's full width is this many thresholds: the threshold line sits mid-width, and a
# statistic past the end is cut with an arrow (its value is printed beside it).
FULL_SCALE = 2.0
NAME_WIDTH = 20  # "residual_transition" and a space
VALUE_WIDTH = 23  # "  123.4 / 10.0 learning"
# Braille: the top three dot rows of a cell (a gap below, so stacked bars stay apart);
# the whole cell, or its left column for the last half cell of a bar.
FULL_CELL, HALF_CELL = chr(0x2800 + 0x3F), chr(0x2800 + 0x07)
BAR_STYLES = {"alarm": Style(color="dark_orange", bold=True), "ok": Style(color="bright_cyan"),
              "learning": Style(color="grey50")}
THRESHOLD_STYLE = Style(color="yellow", bold=True)
OVER_STYLE = Style(color="red", bold=True)


def since_text(since: str | None) -> str:
    return since.replace("T", " ")[:19] if since else "-"


def drill_cells(d: DrillDrift) -> tuple[Text, ...]:
    alarmed = ", ".join(s.name for s in d.alarmed_signals)
    return (
        Text(d.drill, style="bold" if d.state == "alarm" else ""),
        Text(f" {d.state} " if d.state == "alarm" else d.state, style=STATE_STYLES[d.state]),
        Text(str(d.holes), justify="right"),
        Text("-" if d.alarm_at_hole is None else str(d.alarm_at_hole), justify="right"),
        Text(since_text(d.since)),
        Text(alarmed or "-", style="dark_orange" if alarmed else "dim"),
    )


class DrillTable(DataTable[Text]):
    """One row per drill the daemon has seen, keyed by drill; the cursor stays on its drill
    across refreshes."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        for col in DRILL_COLUMNS:
            self.add_column(col, key=col)

    def show(self, drills: list[DrillDrift]) -> None:
        keep = self.selected_drill()
        self.clear()
        for d in drills:
            self.add_row(*drill_cells(d), key=d.drill)
        if keep is not None and keep in {d.drill for d in drills}:
            self.move_cursor(row=self.get_row_index(keep))

    def selected_drill(self) -> str | None:
        if not self.row_count:
            return None
        row = min(self.cursor_row, self.row_count - 1)
        value = self.coordinate_to_cell_key(Coordinate(row, 0)).row_key.value
        return None if value is None else str(value)


def full_scale(signals: tuple[DriftSignal, ...]) -> float:
    """The statistic at a bar's full width, shared by a drill's rows so that they compare."""
    return FULL_SCALE * max((s.threshold for s in signals if s.threshold > 0), default=1.0)


def bar_cells(statistic: float, threshold: float, full: float,
              cells: int) -> tuple[str, int, bool]:
    """A statistic as `cells` braille cells, `full` at the end: (the bar, padded with spaces;
    the threshold's cell; whether the bar was cut at the end)."""
    halves = round(min(max(statistic, 0.0), full) / full * cells * 2)
    bar = FULL_CELL * (halves // 2) + (HALF_CELL if halves % 2 else "")
    at = min(cells - 1, max(0, round(threshold / full * cells)))
    return bar.ljust(cells), at, statistic > full


def signal_row(signal: DriftSignal, full: float, cells: int) -> Text:
    """`name ⠿⠿⠿⠿┃     12.3 / 10.0 alarm`: the bar, the threshold line, the figures."""
    text = Text(no_wrap=True, overflow="crop")
    name_style = "bold dark_orange" if signal.in_alarm else ""
    text.append(f"{signal.name[:NAME_WIDTH - 1]:<{NAME_WIDTH}}", style=name_style)
    if signal.statistic is None:
        text.append(" " * cells)
        text.append(f"{'not computed yet':>{VALUE_WIDTH}}", style="dim")
        return text
    bar, at, cut = bar_cells(signal.statistic, signal.threshold, full, cells)
    style = BAR_STYLES[signal.state]
    text.append(bar[:at], style=style)
    text.append("┃", style=THRESHOLD_STYLE)
    over = bar[at + 1:]
    if cut:
        over = over[:-1] + "▸"
    # past the threshold the bar turns red whatever the state: it is over the line
    text.append(over, style=OVER_STYLE if bar[at + 1:].strip() else style)
    figures = f" {signal.statistic:6.1f} / {signal.threshold:.1f} {signal.state}"
    text.append(f"{figures:>{VALUE_WIDTH}}",
                style="bold dark_orange" if signal.in_alarm else "dim")
    return text


def axis_row(threshold: float, full: float, cells: int) -> Text:
    """0 under the start, the threshold under its line, the full scale at the end."""
    row = [" "] * cells
    end = f"{full:g}"
    labels = [(0, "0"), (round(threshold / full * cells), f"h={threshold:g}"),
              (cells - len(end), end)]
    for at, label in labels:
        for i, ch in enumerate(label):
            if 0 <= at + i < cells:
                row[at + i] = ch
    return Text(" " * NAME_WIDTH + "".join(row), style="dim", no_wrap=True, overflow="crop")


class SignalBars(Widget):
    """Each signal of the selected drill: its CUSUM statistic now, against its threshold."""

    DEFAULT_CSS = """
    SignalBars { height: auto; min-height: 3; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.drill: DrillDrift | None = None
        self.empty = "loading…"

    def show(self, drill: DrillDrift | None, empty: str = "no drill selected") -> None:
        self.drill, self.empty = drill, empty
        self.refresh(layout=True)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.drill.signals) + 1 if self.drill and self.drill.signals else 1

    def render(self) -> Text:
        if self.drill is None:
            return Text(self.empty, style="dim")
        if not self.drill.signals:
            return Text(f"drill {self.drill.drill} has no signals", style="dim")
        signals = self.drill.signals
        cells = max(4, self.size.width - NAME_WIDTH - VALUE_WIDTH)
        full = full_scale(signals)
        text = Text(no_wrap=True, overflow="crop")
        for signal in signals:
            text.append_text(signal_row(signal, full, cells))
            text.append("\n")
        # the daemon has one threshold for every signal; the axis labels the highest
        text.append_text(axis_row(max(s.threshold for s in signals), full, cells))
        return text
