"""What a hyperparameter search (`appliance tune`) leaves in its folder, read without torch:
trials.csv (one row per trial) and best.json (the best finished trial's parameters)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import msgspec

from appliance.errors import ApplianceError
from appliance.records import Trial

TRIALS_FILE = "trials.csv"
BEST_FILE = "best.json"
BEST_FORMAT = "appliance-tune-best/1"
PARAM_NAMES = ("lr", "width", "patch_length", "stem_dilations", "head_epochs",
               "augment_strength")
FIGURES = ("mae_entry_mm", "mae_transition_mm", "mae_exit_mm", "presence_error",
           "duration_s")
TRIAL_COLUMNS = ("number", "state", "objective", *FIGURES, *PARAM_NAMES)
_INTS = ("width", "patch_length", "head_epochs")


def read_trials(folder: Path) -> list[Trial]:
    """The trials of the search in `folder` (none yet: an empty list): an empty cell is None,
    the parameters are under "params"."""
    path = folder / TRIALS_FILE
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        try:
            params = {name: (int(cell) if name in _INTS else
                             cell if name == "stem_dilations" else float(cell))
                      for name in PARAM_NAMES if (cell := row.get(name) or "")}
            out.append(msgspec.convert(
                {"number": int(row["number"]), "state": row["state"],
                 "objective": _number(row.get("objective")),
                 **{k: _number(row.get(k)) for k in FIGURES}, "params": params}, Trial))
        except (KeyError, ValueError, msgspec.ValidationError) as exc:
            raise ApplianceError(f"{TRIALS_FILE} line {line}: {exc}") from None
    return out


def read_best_summary(folder: Path) -> dict[str, Any]:
    """A finished search's best.json, as a job's result fields."""
    try:
        best = json.loads((folder / BEST_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ApplianceError(f"the search finished but its {BEST_FILE} is unreadable: {exc}"
                             ) from None
    return {"best_objective": best.get("objective"), "best_params": best.get("params"),
            "best_trial": best.get("trial"), "trials_finished": best.get("trials_finished")}


def _number(cell: str | None) -> float | None:
    return float(cell) if cell not in (None, "") else None
