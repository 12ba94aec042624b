"""Refit a model folder's review priority without training it again.

The review priority is a logistic model over REVIEW_FEATURES, fitted on out-of-fold answers
(appliance/train/heldout.py). When a feature is added, a folder's members need not change:
given the holes and options the folder was trained with, its members are the finished folds
of that same run. fit_ensemble resumes all of them (and trains none), held_out answers each
hole with the member that never trained on it, and only the calibration and the card change.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from appliance.errors import UsageError
from appliance.train.card import refresh_card
from appliance.train.data import TrainHole, dataset_hash
from appliance.train.export import read_manifest
from appliance.train.heldout import held_out
from appliance.train.progress import Progress
from appliance.train.train import (
    FoldResult,
    TrainOptions,
    claim_work,
    fit_ensemble,
    run_key,
    save_fold,
    shape_model_to_spec,
)


def recalibrate(model_dir: str | Path, holes: list[TrainHole], opts: TrainOptions,
                card_notes: str = "", progress: Progress | None = None) -> dict[str, Any]:
    """Refit the review calibration of `model_dir` on its members' out-of-fold answers to
    `holes` (the folder's own training holes, with `opts` its training options: refused when
    the options differ). Writes the manifest and the card; returns the new calibration.
    Members, weights, probe and version are unchanged, so every answer stays the same but
    its review_priority."""
    model_dir = Path(model_dir)
    raw = read_manifest(model_dir)
    shape_model_to_spec(opts)
    trained_with = (raw.get("training") or {}).get("options") or {}
    now, default = opts.key_dict(), TrainOptions().key_dict()
    # an option added since the folder was trained counts as its default then
    differ = sorted(k for k in set(now) | set(trained_with)
                    if now.get(k, default.get(k)) != trained_with.get(k, default.get(k)))
    if differ:
        raise UsageError(f"{model_dir}: trained with other options ({', '.join(differ)}); its "
                         "members are not the folds of this run (refit only with its recipe)")
    if len(raw["weights"]) != opts.folds:
        raise UsageError(f"{model_dir}: {len(raw['weights'])} members, not {opts.folds} folds")
    reports = raw["training"].get("fold_reports") or [{} for _ in raw["weights"]]
    with tempfile.TemporaryDirectory(prefix="recalibrate-") as tmp:
        work = Path(tmp) / "work"
        claim_work(work, run_key(dataset_hash(holes), opts, None))
        for fold, rel in enumerate(raw["weights"]):
            report = {"best_val_loss": None, "epochs_run": 0, **reports[fold], "fold": fold}
            save_fold(work, FoldResult(fold, load_file(str(model_dir / rel)), report))
        fit = fit_ensemble(holes, opts, work, progress=progress, resume_only=True)
    review = {**held_out(fit, opts).review.to_dict(),
              "refit": {"at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "dataset_hash": fit.dataset_hash}}
    raw["review"] = review
    refresh_card(model_dir, card_notes, raw)
    return review
