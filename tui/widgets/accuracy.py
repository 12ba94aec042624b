"""The models screen's live accuracy: the active model against what operators confirmed.

The gates' figures (the models table) are from held-out data at training time; these are
from the rig, on the estimates that were actually served, over the last 50 and 200 holes
operators confirmed.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from appliance.points import POINT_NAMES
from appliance.records import LiveAccuracy
from tui.fields import fmt_mm, fmt_percent

ACCURACY_COLUMNS = ("window", "holes", "MAE entry", "MAE trans", "MAE exit", "presence ok")
WIDTHS = (10, 6, 11, 11, 10, 13)


def _row(cells: tuple[str, ...]) -> str:
    first, *rest = cells
    return "  " + first.ljust(WIDTHS[0]) + "".join(
        c.rjust(w) for c, w in zip(rest, WIDTHS[1:], strict=True))


def accuracy_view(version: str, accuracy: LiveAccuracy | None, served: bool) -> Text:
    """served: whether the daemon's GET /models/active has the field at all (older ones do
    not); accuracy None with served: no confirmed holes of this version yet."""
    text = Text()
    text.append("Live accuracy", style="bold")
    if version == "-":
        return text.append(": no active model", style="dim")
    text.append(f" of {version}")
    if not served:
        return text.append(": not served by this daemon (older than the drift watch)",
                           style="dim")
    if accuracy is None or not accuracy.windows:
        return text.append(": no confirmed holes yet", style="dim")
    text.append(f" on holes operators confirmed ({accuracy.confirmed} in all; MAE in mm)",
                style="dim")
    text.append("\n" + _row(ACCURACY_COLUMNS), style="dim")
    for w in accuracy.windows:
        text.append("\n" + _row((f"last {w.window}", str(w.holes),
                                 *(fmt_mm(w.mae(p), 3) for p in POINT_NAMES),
                                 fmt_percent(w.presence_accuracy))))
    return text


class LiveAccuracyView(Static):
    DEFAULT_CSS = """
    LiveAccuracyView { height: auto; padding: 0 1; }
    """

    def show(self, version: str, accuracy: LiveAccuracy | None, served: bool) -> None:
        self.update(accuracy_view(version, accuracy, served))
