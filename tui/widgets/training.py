"""The training screen's widgets: the table of a hyperparameter search's trials.

The parameters a search varies depend on what it starts from (a fine-tune varies lr,
head_epochs and augment_strength; a fresh model its structure as well), so their columns are
the ones the trials carry, in the daemon's order, not a list kept here.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from appliance.records import ParamValue, Trial
from tui.client import best_trial
from tui.fields import fmt_mm, fmt_percent

# the MAEs are in mm, as is the objective (mean MAE + presence error)
FIXED_COLUMNS = ("trial", "state", "objective", "entry", "transition", "exit", "presence",
                 "time s")
STATE_STYLES = {"complete": "", "pruned": "dim", "fail": "red", "running": "yellow"}
BEST_STYLE = "bold green"
BEST_MARK = "★"


def param_text(value: ParamValue) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def trial_cells(trial: Trial, best: bool, params: tuple[str, ...]) -> tuple[Text, ...]:
    style = BEST_STYLE if best else STATE_STYLES.get(trial.state, "")

    def figure(text: str) -> Text:
        return Text(text, style=style, justify="right")

    mae = (trial.objective, trial.mae_entry_mm, trial.mae_transition_mm, trial.mae_exit_mm)
    return (
        figure(f"{trial.number} {BEST_MARK}" if best else f"{trial.number}  "),
        Text(trial.state, style=style),
        *(figure(fmt_mm(v, 3)) for v in mae),
        figure(fmt_percent(trial.presence_error)),
        figure(fmt_mm(trial.duration_s, 1)),
        *(figure(param_text(trial.params[p]) if p in trial.params else "-") for p in params),
    )


class TrialTable(DataTable[Text]):
    """One row per trial, in order; the best one (the daemon's best_trial once the search
    ends, the lowest objective so far before) starred and in green."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.params: tuple[str, ...] = ()
        self.best: int | None = None  # the starred trial's number
        self._set_columns([])

    def _set_columns(self, rows: list[tuple[Text, ...]]) -> None:
        # widths given, not measured: DataTable measures its cells when idle, after it may
        # have drawn (and cached) the header at the widths of the labels alone
        self.clear(columns=True)
        for i, col in enumerate((*FIXED_COLUMNS, *self.params)):
            width = max([len(col), *(row[i].cell_len for row in rows)])
            self.add_column(col, key=col, width=width)

    def show(self, trials: list[Trial], best_number: int | None = None) -> None:
        self.params = tuple(dict.fromkeys(p for t in trials for p in t.params))
        best = best_trial(trials, best_number)
        self.best = None if best is None else best.number
        rows = [trial_cells(t, t.number == self.best, self.params) for t in trials]
        row = self.cursor_row
        self._set_columns(rows)
        for t, cells in zip(trials, rows, strict=True):
            self.add_row(*cells, key=str(t.number))
        if trials:
            self.move_cursor(row=min(row, len(trials) - 1))
