"""Torque (and thrust) against depth in braille dots, with the depth-point markers.

Drawn with plain characters so it works over SSH in any terminal. The daemon already
downsamples the trace (min/max preserving); here each dot column keeps the min and max
of its depth bin, so a 10,000-sample trace costs a few numpy calls per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from appliance.points import POINT_NAMES
from tui.markers import MarkerSet, PlotTrace

# Braille dot bits by (x, y) inside a 2x4 cell.
_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
AXIS_WIDTH = 7
POINT_COLOURS = {"entry": "green", "transition": "yellow", "exit": "red"}
POINT_TAGS = {"entry": "E", "transition": "T", "exit": "X"}
TORQUE_STYLE = Style(color="bright_cyan")
THRUST_STYLE = Style(color="magenta", dim=True)
STEP_STYLE = Style(color="grey37")
MIN_SPAN_MM = 0.5
# Braille character of each 8-dot pattern; no dots is a plain space.
_BRAILLE = np.array([" "] + [chr(0x2800 + i) for i in range(1, 256)])


@dataclass
class View:
    """The depth window on screen."""

    lo: float
    hi: float

    @property
    def span(self) -> float:
        return self.hi - self.lo


def bin_minmax(
    x: np.ndarray, y: np.ndarray, lo: float, hi: float, bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per bin of x in [lo, hi): min and max of y (NaN where a bin is empty)."""
    mins = np.full(bins, np.nan)
    maxs = np.full(bins, np.nan)
    if bins <= 0 or hi <= lo:
        return mins, maxs
    keep = (x >= lo) & (x <= hi) & np.isfinite(y)
    if not keep.any():
        return mins, maxs
    idx = np.minimum(((x[keep] - lo) / (hi - lo) * bins).astype(int), bins - 1)
    yk = y[keep]
    np.fmin.at(mins, idx, yk)
    np.fmax.at(maxs, idx, yk)
    return mins, maxs


class TracePlot(Widget):
    """The hole screen's plot. The screen owns the data and calls refresh() after edits."""

    DEFAULT_CSS = """
    TracePlot { height: 1fr; min-height: 8; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.trace: PlotTrace | None = None
        self.markers: MarkerSet | None = None
        self.estimate: dict[str, float | None] = {}
        self.show_thrust = True
        self.view = View(0.0, 1.0)

    # --- data and view ---------------------------------------------------------------------

    def show(self, trace: PlotTrace, markers: MarkerSet, estimate: dict[str, float | None]) -> None:
        self.trace, self.markers, self.estimate = trace, markers, estimate
        self.reset_view()

    def reset_view(self) -> None:
        if self.trace is not None:
            lo, hi = self.trace.depth_range
            pad = max(0.5, 0.02 * (hi - lo))
            self.view = View(lo - pad, hi + pad)
        self.refresh()

    def zoom(self, factor: float, centre: float | None = None) -> None:
        """factor < 1 zooms in; the centre defaults to the selected marker, else mid-view."""
        if centre is None and self.markers is not None:
            centre = self.markers.values.get(self.markers.selected)
        if centre is None:
            centre = (self.view.lo + self.view.hi) / 2
        span = max(MIN_SPAN_MM, self.view.span * factor)
        self.view = View(centre - span / 2, centre + span / 2)
        self.refresh()

    def pan(self, fraction: float) -> None:
        shift = self.view.span * fraction
        self.view = View(self.view.lo + shift, self.view.hi + shift)
        self.refresh()

    def keep_visible(self, depth: float | None) -> None:
        """Scroll so a marker being moved never leaves the screen."""
        if depth is None:
            return
        margin = 0.05 * self.view.span
        if depth < self.view.lo + margin:
            self.pan((depth - margin - self.view.lo) / self.view.span)
        elif depth > self.view.hi - margin:
            self.pan((depth + margin - self.view.hi) / self.view.span)

    # --- drawing -----------------------------------------------------------------------------

    def render(self) -> Text:
        width, height = self.size.width, self.size.height
        if self.trace is None or width <= AXIS_WIDTH + 2 or height < 4:
            return Text("loading trace…", style="dim")
        return self.draw(width, height)

    def draw(self, width: int, height: int) -> Text:
        trace, view = self.trace, self.view
        assert trace is not None
        cols = width - AXIS_WIDTH
        rows = height - 2  # one row of marker tags on top, one of depth ticks below
        dots_x, dots_y = cols * 2, rows * 4

        t_min, t_max = bin_minmax(trace.depth_mm, trace.torque_a, view.lo, view.hi, dots_x)
        visible = np.isfinite(t_max)
        top = float(np.nanmax(t_max)) if visible.any() else 1.0
        bottom = min(0.0, float(np.nanmin(t_min)) if visible.any() else 0.0)
        top = max(top, bottom + 0.5) * 1.05
        torque_bits = np.zeros((rows, cols), dtype=np.int32)
        self._plot_into(torque_bits, t_min, t_max, bottom, top, dots_y)

        thrust_bits = np.zeros((rows, cols), dtype=np.int32)
        if self.show_thrust and trace.thrust_a is not None:
            h_min, h_max = bin_minmax(trace.depth_mm, trace.thrust_a, view.lo, view.hi, dots_x)
            if np.isfinite(h_max).any():
                # Thrust has its own scale: only its shape matters next to torque.
                lo_h, hi_h = float(np.nanmin(h_min)), float(np.nanmax(h_max))
                hi_h = max(hi_h, lo_h + 0.5) * 1.05
                self._plot_into(thrust_bits, h_min, h_max, min(0.0, lo_h), hi_h, dots_y)

        chars, style_ids, styles = self._cells(torque_bits, thrust_bits, cols)

        text = Text(no_wrap=True, overflow="crop")
        text.append(" " * AXIS_WIDTH)
        text.append_text(self._tag_row(cols))
        text.append("\n")
        for r in range(rows):
            frac = 1 - r / max(1, rows - 1)
            if r % 4 == 0 or r == rows - 1:
                text.append(f"{bottom + frac * (top - bottom):6.1f}┤", style="dim")
            else:
                text.append("      │", style="dim")
            # one append per run of equal style: a frame costs a few ms, not one call a cell
            row, ids = "".join(chars[r]), style_ids[r]
            cuts = [0, *(np.flatnonzero(np.diff(ids)) + 1).tolist(), cols]
            for start, end in zip(cuts, cuts[1:], strict=False):
                text.append(row[start:end], style=styles[int(ids[start])])
            text.append("\n")
        text.append_text(self._tick_row(cols))
        return text

    def _cells(
        self, torque_bits: np.ndarray, thrust_bits: np.ndarray, cols: int
    ) -> tuple[np.ndarray, np.ndarray, list[Style | None]]:
        """Characters and style ids of the plot area; markers and step changes overlaid."""
        assert self.trace is not None
        chars = _BRAILLE[torque_bits | thrust_bits]
        style_ids = np.where(torque_bits > 0, 1, np.where(thrust_bits > 0, 2, 0))
        styles: list[Style | None] = [None, TORQUE_STYLE, THRUST_STYLE, STEP_STYLE]
        empty = style_ids == 0
        for depth in self.trace.step_changes_mm():
            c = self._col(depth, cols)
            if c is not None:
                chars[empty[:, c], c] = "┊"
                style_ids[empty[:, c], c] = 3
        for c, (colour, operator, selected) in self._marker_columns(cols).items():
            line = len(styles)
            styles.append(Style(color=colour, bold=selected, dim=not operator))
            bg = Style(bgcolor="yellow4" if colour == "yellow" else f"dark_{colour}")
            styles += [TORQUE_STYLE + bg, THRUST_STYLE + bg]
            col_ids = style_ids[:, c].copy()
            chars[empty[:, c], c] = "│" if operator else "┆"
            style_ids[:, c] = np.select([col_ids == 1, col_ids == 2], [line + 1, line + 2], line)
        return chars, style_ids, styles

    def _plot_into(
        self, bits: np.ndarray, lo_v: np.ndarray, hi_v: np.ndarray, bottom: float, top: float,
        dots_y: int,
    ) -> None:
        scale = (dots_y - 1) / (top - bottom)
        prev: tuple[int, int] | None = None
        for x in range(len(lo_v)):
            if not np.isfinite(hi_v[x]):
                prev = None
                continue
            y0 = int(round((top - hi_v[x]) * scale))
            y1 = int(round((top - lo_v[x]) * scale))
            if prev is not None:  # join to the previous column so ramps stay continuous
                y0, y1 = min(y0, prev[1]), max(y1, prev[0])
            prev = (int(round((top - hi_v[x]) * scale)), int(round((top - lo_v[x]) * scale)))
            y0, y1 = max(0, y0), min(dots_y - 1, y1)
            col, sub_x = divmod(x, 2)
            for y in range(y0, y1 + 1):
                row, sub_y = divmod(y, 4)
                bits[row, col] |= _DOTS[sub_y][sub_x]

    def _col(self, depth: float, cols: int) -> int | None:
        if not self.view.lo <= depth <= self.view.hi:
            return None
        return min(cols - 1, int((depth - self.view.lo) / self.view.span * cols))

    def _marker_columns(self, cols: int) -> dict[int, tuple[str, bool, bool]]:
        """Column -> (colour, is the operator's, is selected). Operator markers win."""
        out: dict[int, tuple[str, bool, bool]] = {}
        for name in POINT_NAMES:
            value = self.estimate.get(name)
            c = None if value is None else self._col(value, cols)
            if c is not None:
                out[c] = (POINT_COLOURS[name], False, False)
        if self.markers is not None:
            for name in POINT_NAMES:
                value = self.markers.values.get(name)
                c = None if value is None else self._col(value, cols)
                if c is not None:
                    out[c] = (POINT_COLOURS[name], True, name == self.markers.selected)
        return out

    def _tag_row(self, cols: int) -> Text:
        cells: list[tuple[str, Style]] = [(" ", Style())] * cols
        for name in POINT_NAMES:
            value = self.estimate.get(name)
            c = None if value is None else self._col(value, cols)
            if c is not None:
                cells[c] = (POINT_TAGS[name].lower(), Style(color=POINT_COLOURS[name], dim=True))
        if self.markers is not None:
            for name in POINT_NAMES:
                value = self.markers.values.get(name)
                c = None if value is None else self._col(value, cols)
                if c is not None:
                    selected = name == self.markers.selected
                    cells[c] = (POINT_TAGS[name], Style(color=POINT_COLOURS[name], bold=True,
                                                        reverse=selected))
        row = Text()
        for char, style in cells:
            row.append(char, style=style)
        return row

    def _tick_row(self, cols: int) -> Text:
        row = [" "] * (AXIS_WIDTH + cols)
        label = "mm"
        row[: len(label)] = list(label)
        every = 12
        for c in range(0, cols - 6, every):
            depth = self.view.lo + (c + 0.5) / cols * self.view.span
            tick = f"┴{depth:.1f}" if self.view.span < 20 else f"┴{depth:.0f}"
            for i, ch in enumerate(tick):
                if AXIS_WIDTH + c + i < len(row):
                    row[AXIS_WIDTH + c + i] = ch
        return Text("".join(row), style="dim")
