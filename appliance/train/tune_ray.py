"""`appliance tune --ray`: the search's trials run by Ray Tune on a cluster, chosen by the
same Optuna TPE searcher (its study in DIR, so the search resumes like a local one) and
stopped early by Ray Tune's median stopping rule on each epoch's validation loss."""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from appliance.errors import ValidationError
from appliance.points import POINT_NAMES
from appliance.train.cluster import check_address, connected, gpu_share
from appliance.train.progress import Progress
from appliance.train.train import TrainOptions
from appliance.train.tune import (
    STUDY_NAME,
    Search,
    apply_params,
    finished_trials,
    journal,
    open_study,
    run_trial,
    suggest,
    write_results,
)


class FinalValueSearch(OptunaSearch):
    """Optuna is told each trial's objective when it ends; stopping early on
    the epochs' validation loss is the scheduler's (so it is not reported to
    Optuna, which would read it as the objective)."""

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        return None

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        trial = self._ot_trials.get(trial_id)
        if trial is not None and result and "objective" in result:
            trial.set_user_attr("mae_mm", {p: result.get(f"mae_{p}_mm")  # results are flat
                                           for p in POINT_NAMES})
            trial.set_user_attr("presence_error", result["presence_error"])
            trial.set_user_attr("duration_s",
                                round(float(result.get("time_total_s", 0)), 1))
        super().on_trial_complete(trial_id, result, error)


def _space(trial: Any, epochs: int, structure: bool) -> None:
    """Ray Tune's define-by-run space: the parameters are the trial's, nothing constant."""
    suggest(trial, epochs, structure)


def _trainable(config: dict[str, Any], search: Search) -> None:
    from ray import tune

    # the trial is the unit Ray schedules: its folds run one after another inside it
    opts: TrainOptions = dataclasses.replace(apply_params(search.opts, config), ray=None)
    last = {"step": 0, "val_loss": float("inf")}

    def on_epoch(step: int, val_loss: float) -> None:
        last.update(step=step, val_loss=val_loss)
        tune.report({"step": step, "val_loss": val_loss})

    result = run_trial(search.holes, opts, search.parent_dir, on_epoch)
    tune.report({**last, "objective": result.objective,
                 **{f"mae_{p}_mm": v for p, v in result.mae_mm.items()},
                 "presence_error": result.presence_error})


def run_search_on_ray(search: Search, progress: Progress) -> dict[str, Any]:
    address = check_address(search.opts.ray or "local")
    study = open_study(search)  # fails RUNNING leftovers, so the searcher sees a clean study
    remaining = search.trials - finished_trials(study)
    progress.emit("search", trials=search.trials, remaining=max(remaining, 0),
                  holes=len(search.holes), ray=address)
    if remaining > 0:
        # the epochs report the validation loss only; the objective comes once, at the end
        os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
        with connected(address) as ray:
            from ray import tune
            from ray.tune.schedulers import MedianStoppingRule

            epochs, structure = search.opts.epochs, search.parent_dir is None
            searcher = FinalValueSearch(
                space=functools.partial(_space, epochs=epochs, structure=structure),
                metric="objective", mode="min", study_name=STUDY_NAME,
                storage=journal(search.out_dir), seed=search.seed)
            scheduler = MedianStoppingRule(time_attr="step", metric="val_loss", mode="min",
                                           grace_period=1, min_samples_required=2)
            gpus = float(ray.cluster_resources().get("GPU", 0))
            resources = {"cpu": max(1, search.opts.threads),
                         "gpu": gpu_share(gpus, 1) if search.opts.device != "cpu" else 0}
            trainable = tune.with_resources(tune.with_parameters(_trainable, search=search),
                                            resources)
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                            num_samples=remaining),
                run_config=tune.RunConfig(storage_path=str(search.out_dir.resolve() / "ray"),
                                          name=STUDY_NAME, verbose=0))
            tuner.fit()
    study = open_study(search)
    best = write_results(study, search)
    for row_trial in study.get_trials(deepcopy=False):
        progress.emit("trial", number=row_trial.number, state=row_trial.state.name.lower(),
                      objective=row_trial.value, params=row_trial.params)
    if best is None:
        raise ValidationError(f"{search.out_dir}: no trial finished on Ray")
    progress.emit("done", out=str(search.out_dir), best_objective=best["objective"],
                  params=best["params"], trials=finished_trials(study))
    return best
