"""The training child's JSON-lines progress events, folded into a job's progress.

Events (one JSON object per stdout line, see `appliance train --progress-json`):
  {"event": "epoch", "fold", "epoch", "train_loss", "val_loss", "eta_s"}
  {"event": "fold_done", "fold", ...}   {"event": "done", ...}   {"event": "error", "message"}
  {"event": "trial", "number", "state", "objective", "trials_done", "trials_total", ...}
      (a hyperparameter search, `appliance tune --progress-json`)
Any other line is log text.
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec

from appliance.records import JobProgress

EVENT_NAMES = ("epoch", "fold_done", "trial", "done", "error")
_COUNTS = ("fold", "epoch", "trials_done", "trials_total")
_FIGURES = ("train_loss", "val_loss", "eta_s", "best_objective")


def parse_event(line: str) -> dict[str, Any] | None:
    """The event on this line, or None when the line is plain log text."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if not isinstance(obj, dict) or obj.get("event") not in EVENT_NAMES:
        return None
    return obj


def fold_progress(progress: JobProgress, event: dict[str, Any], folds: int,
                  epochs: int) -> JobProgress:
    """The job's progress after `event`: fold/epoch reached, losses, ETA and a 0..1 fraction."""
    kind = event["event"]
    seen: dict[str, Any] = {"last_event": kind, "folds": folds, "epochs": epochs}
    for key in (*_COUNTS, *_FIGURES):
        value = event.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        if not math.isfinite(value):
            seen[key] = None
        elif key in _FIGURES:
            seen[key] = float(value)
        elif float(value).is_integer():  # a count that is not whole is not taken
            seen[key] = int(value)
    out = msgspec.structs.replace(progress, **seen)
    fold = int(out.fold or 0)
    epoch = int(out.epoch or 0)
    before = float(out.fraction or 0.0)
    # folds and epochs may be counted from 0 or 1 by the trainer; clamp rather than trust
    if kind == "done":
        fraction = 1.0
    elif kind == "trial" and _number(event.get("trials_total")):
        fraction = float(event.get("trials_done") or 0) / float(event["trials_total"])
    elif kind == "fold_done" and _number(event.get("folds_done")):
        # folds trained in parallel (Ray) finish in any order: count them, not their index
        fraction = float(event["folds_done"]) / folds
    elif kind == "fold_done":
        fraction = (min(fold, folds - 1) + 1) / folds
    elif kind == "epoch" and _number(event.get("epochs_total")):
        fraction = float(event.get("epochs_done") or 0) / float(event["epochs_total"])
    elif kind == "epoch":
        within = min(epoch + 1, epochs) / max(epochs, 1)
        fraction = (min(fold, folds - 1) + within) / folds
    else:
        fraction = before
    return msgspec.structs.replace(
        out, fraction=round(max(before, min(fraction, 1.0)), 4),
        eta_s=0.0 if kind == "done" else out.eta_s)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0
