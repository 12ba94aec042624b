"""`appliance tune`: a hyperparameter search over the ensemble recipe.

One trial trains the recipe's K folds with the trial's parameters (appliance.train.train.
fit_ensemble, exactly as `appliance train` does) and scores the out-of-fold answers as served
(appliance.train.heldout): the objective is their mean absolute error over the three points,
plus PRESENCE_COST_MM for every wrong presence (a point said present that is absent, or the
reverse, is as bad as a point that far off). Lower is better.

Locally Optuna drives the search (TPE sampler, median pruning on each epoch's validation loss);
with `--ray`, Ray Tune runs the trials on the cluster with the same Optuna TPE searcher and a
median stopping rule. Either way the Optuna study lives in DIR (a journal file), so a killed
search resumes where it stopped, and DIR/trials.csv and DIR/best.json are rewritten after
every trial. `appliance train --config DIR/best.json` trains with the best parameters.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from appliance.errors import UsageError, ValidationError
from appliance.jobs.search import (
    BEST_FILE,
    BEST_FORMAT,
    FIGURES,
    PARAM_NAMES,
    TRIAL_COLUMNS,
    TRIALS_FILE,
)
from appliance.train.data import TrainHole
from appliance.train.heldout import held_out
from appliance.train.progress import Progress
from appliance.train.train import TrainOptions, fit_ensemble, point_metrics, truth_array

STUDY_NAME = "appliance-tune"
JOURNAL_FILE = "optuna.journal"
PRESENCE_COST_MM = 1.0

# The search space. Widths, patch lengths and stems are the sizes the serving budget allows
# (5 members at ~4 ms per hole for the shipped 16 / 32 / 1-2-4); the feature length, 1,088
# cells, is a multiple of every patch length here.
WIDTHS = (8, 16, 24, 32)
PATCH_LENGTHS = (16, 32, 64)
STEMS = ("1", "1-2", "1-2-4", "1-2-4-8")


@dataclass(frozen=True)
class TrialScore:
    objective: float
    mae_mm: dict[str, float | None]
    presence_error: float
    metrics: dict[str, Any]


def suggest(trial: Any, epochs: int, structure: bool) -> dict[str, Any]:
    """The trial's parameters (an Optuna trial: local, or Ray Tune's define-by-run).
    structure False (a fine-tune: the parent's weights fix the shapes): no width, patch
    length or stem; head-phase epochs only then (a fresh model has no head phase)."""
    params: dict[str, Any] = {"lr": trial.suggest_float("lr", 3e-4, 1e-2, log=True)}
    if structure:
        params["width"] = trial.suggest_categorical("width", list(WIDTHS))
        params["patch_length"] = trial.suggest_categorical("patch_length", list(PATCH_LENGTHS))
        params["stem_dilations"] = trial.suggest_categorical("stem_dilations", list(STEMS))
    else:
        params["head_epochs"] = trial.suggest_int("head_epochs", 1, max(1, epochs // 2))
    params["augment_strength"] = trial.suggest_float("augment_strength", 0.0, 1.0)
    return params


def apply_params(opts: TrainOptions, params: dict[str, Any]) -> TrainOptions:
    """opts with a search's parameters (a trial's, or best.json's); unknown names refused."""
    params = {k: v for k, v in params.items() if v is not None}  # not searched in that run
    unknown = set(params) - set(PARAM_NAMES)
    if unknown:
        raise ValidationError(f"unknown tuned parameter(s) {sorted(unknown)}; "
                              f"expected {', '.join(PARAM_NAMES)}")
    model = opts.model
    if "width" in params:
        model = replace(model, hidden=int(params["width"]), d_model=int(params["width"]))
    if "patch_length" in params:
        model = replace(model, patch_length=int(params["patch_length"]))
    if "stem_dilations" in params:
        model = replace(model, stem_dilations=tuple(
            int(d) for d in str(params["stem_dilations"]).split("-")))
    out = replace(opts, model=model)
    if "lr" in params:
        out.lr = float(params["lr"])
    if "head_epochs" in params:
        out.head_epochs = int(params["head_epochs"])
    if "augment_strength" in params:
        out.augment_strength = float(params["augment_strength"])
        out.augment = max(out.augment, 1)  # a strength means nothing without a copy
    return out


def read_best(path: str | Path) -> dict[str, Any]:
    """The parameters of a search's best.json, checked."""
    path = Path(path)
    try:
        best = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValidationError(f"{path}: not a readable best.json ({exc})") from None
    params = best.get("params") if isinstance(best, dict) else None
    if not isinstance(best, dict) or best.get("format") != BEST_FORMAT \
            or not isinstance(params, dict):
        raise ValidationError(f"{path}: not a best.json written by appliance tune "
                              f"(format {BEST_FORMAT})")
    return params


def score(metrics: dict[str, Any]) -> TrialScore:
    """The objective of out-of-fold metrics (point_metrics' shape)."""
    maes = {name: p.get("mae_mm") for name, p in metrics["points"].items()}
    got = [v for v in maes.values() if v is not None and math.isfinite(v)]
    mae = float(np.mean(got)) if got else PRESENCE_COST_MM
    presence = metrics["presence"].get("accuracy")
    presence_error = 1.0 - float(presence) if presence is not None else 1.0
    return TrialScore(mae + PRESENCE_COST_MM * presence_error, maes, presence_error, metrics)


def run_trial(holes: list[TrainHole], opts: TrainOptions, parent_dir: str | Path | None,
              on_epoch: Callable[[int, float], None]) -> TrialScore:
    """One trial: the folds trained (no checkpoints: a killed trial is rerun whole), the
    out-of-fold answers scored. on_epoch(step, val_loss) may raise TrialPruned."""
    sink = _EpochHook(on_epoch, opts.epochs)
    fit = fit_ensemble(holes, opts, work=None, parent_dir=parent_dir, progress=sink)
    held = held_out(fit, opts)
    n = fit.n_original
    oof = np.array([[np.nan if v is None else v for v in a.points.as_dict().values()]
                    for a in held.answers[:n]], dtype=np.float64).reshape(-1, 3)
    return score(point_metrics(oof, truth_array(fit.holes[:n])))


class _EpochHook(Progress):
    """fit_ensemble's progress, turned into (step, validation loss) for the pruner: step is
    fold * epochs + epoch, the same for every trial."""

    def __init__(self, on_epoch: Callable[[int, float], None], epochs: int) -> None:
        super().__init__(json_lines=False, stream=open(os.devnull, "w"))  # noqa: SIM115
        self._on_epoch, self._epochs = on_epoch, epochs

    def emit(self, event: str, **fields: Any) -> None:
        if event == "epoch":
            self._on_epoch(int(fields["fold"]) * self._epochs + int(fields["epoch"]),
                           float(fields["val_loss"]))


# ---------------------------------------------------------------- the search, local (Optuna)

@dataclass
class Search:
    """What a search is run on and with, and where it keeps its state."""

    holes: list[TrainHole]
    opts: TrainOptions
    out_dir: Path
    trials: int
    parent_dir: str | None = None
    seed: int = 0
    dataset: dict[str, Any] | None = None  # what the holes came from (best.json records it)


def import_optuna() -> Any:
    try:
        import optuna
    except ModuleNotFoundError:
        raise UsageError("appliance tune needs Optuna, which is not installed: "
                         "pip install -e '.[train]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def open_study(search: Search) -> Any:
    """The search's Optuna study in DIR, created or reopened. A trial a killed search left
    RUNNING is failed and its parameters queued again, so the search resumes exactly."""
    optuna = import_optuna()
    study = optuna.create_study(
        study_name=STUDY_NAME, storage=journal(search.out_dir), direction="minimize",
        load_if_exists=True,
        # a resumed search must not replay the random start of the one it resumes
        sampler=optuna.samplers.TPESampler(seed=search.seed + _trial_count(search.out_dir)),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(t.params)  # the same parameters, tried again
    return study


def journal(out_dir: Path) -> Any:
    """The search's Optuna storage: an append-only journal file in DIR, safe against a kill
    mid-write (a torn last line is ignored on reading)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    out_dir.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(out_dir / JOURNAL_FILE)))


def _trial_count(out_dir: Path) -> int:
    try:
        with (out_dir / TRIALS_FILE).open() as fh:
            return max(sum(1 for _ in fh) - 1, 0)
    except OSError:
        return 0


def finished_trials(study: Any) -> int:
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return sum(t.state in done for t in study.get_trials(deepcopy=False))


def run_search(search: Search, progress: Progress) -> dict[str, Any]:
    """Trials until the study holds search.trials finished ones (resuming a study in DIR);
    returns best.json's content."""
    optuna = import_optuna()
    study = open_study(search)
    remaining = search.trials - finished_trials(study)
    progress.emit("search", trials=search.trials, remaining=max(remaining, 0),
                  holes=len(search.holes))

    def objective(trial: Any) -> float:
        params = suggest(trial, search.opts.epochs, structure=search.parent_dir is None)
        opts = apply_params(search.opts, params)
        started = time.monotonic()

        def on_epoch(step: int, val_loss: float) -> None:
            trial.report(val_loss, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"step {step}: validation loss {val_loss:.4f} "
                                         "worse than the median of earlier trials")

        result = run_trial(search.holes, opts, search.parent_dir, on_epoch)
        trial.set_user_attr("duration_s", round(time.monotonic() - started, 1))
        trial.set_user_attr("mae_mm", result.mae_mm)
        trial.set_user_attr("presence_error", result.presence_error)
        return result.objective

    def after(study: Any, trial: Any) -> None:
        best = write_results(study, search)
        progress.emit("trial", number=trial.number, state=trial.state.name.lower(),
                      objective=trial.value, params=trial.params,
                      trials_done=finished_trials(study), trials_total=search.trials,
                      best_objective=best["objective"] if best else None)

    if remaining > 0:
        study.optimize(objective, n_trials=remaining, callbacks=[after],
                       catch=(ValidationError,))
    best = write_results(study, search)
    if best is None:
        raise ValidationError(f"{search.out_dir}: no trial finished; see {TRIALS_FILE}")
    progress.emit("done", out=str(search.out_dir), best_objective=best["objective"],
                  params=best["params"], trials=finished_trials(study))
    return best


# ---------------------------------------------------------------- results

def trial_rows(study: Any) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        mae = t.user_attrs.get("mae_mm") or {}
        rows.append({"number": t.number, "state": t.state.name.lower(),
                     # a pruned trial's value is its last epoch's loss, not an objective
                     "objective": t.value if t.state.name == "COMPLETE" else None,
                     **{f"mae_{p}_mm": mae.get(p) for p in ("entry", "transition", "exit")},
                     "presence_error": t.user_attrs.get("presence_error"),
                     "duration_s": t.user_attrs.get("duration_s"),
                     **{p: t.params.get(p) for p in PARAM_NAMES}})
    return rows


def write_results(study: Any, search: Search) -> dict[str, Any] | None:
    """DIR/trials.csv (every trial) and DIR/best.json (the best finished one), each written
    under a temporary name and renamed: a reader never sees half a file."""
    rows = trial_rows(study)
    tmp = search.out_dir / f".{TRIALS_FILE}.tmp"
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=TRIAL_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, search.out_dir / TRIALS_FILE)
    complete = [r for r in rows if r["state"] == "complete" and r["objective"] is not None]
    if not complete:
        return None
    top = min(complete, key=lambda r: r["objective"])
    best = {"format": BEST_FORMAT, "objective": top["objective"], "trial": top["number"],
            "params": {p: top[p] for p in PARAM_NAMES if top[p] is not None},
            "figures": {k: top[k] for k in FIGURES},
            "trials_finished": finished_trials(study), "trials_asked": search.trials,
            "objective_means": f"mean MAE mm of the present points + {PRESENCE_COST_MM} mm "
                               "x the share of wrong presences, out of fold",
            "recipe": {"arch": search.opts.arch, "folds": search.opts.folds,
                       "epochs": search.opts.epochs, "placement": search.opts.placement,
                       "parent": search.parent_dir and Path(search.parent_dir).name},
            "dataset": search.dataset,
            "written_at": datetime.now(UTC).isoformat(timespec="seconds")}
    tmp = search.out_dir / f".{BEST_FILE}.tmp"
    tmp.write_text(json.dumps(best, indent=2) + "\n")
    os.replace(tmp, search.out_dir / BEST_FILE)
    return best

