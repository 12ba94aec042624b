"""Out of fold: each training hole answered as served by the member that never trained on
it. Those answers score a run (the card's cross-validation table), calibrate its review
priority and say what placement it learnt."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from appliance.engine.answer import Decoding, answer_with_features, hole_outputs
from appliance.engine.review import ALL_FEATURES, ReviewCalibration, is_wrong
from appliance.engine.review import fit as fit_review
from appliance.estimators.heuristic import Reading
from appliance.estimators.placement import Anchored
from appliance.features import FeatureBatch, FeatureSpec
from appliance.points import POINT_NAMES, DepthEstimate, DepthPoints
from appliance.train.model import predict

if TYPE_CHECKING:
    from appliance.train.train import Fitted, TrainOptions


@dataclass(frozen=True)
class HeldOut:
    """The out-of-fold answers of a fit, and what was learnt from them."""

    answers: list[DepthEstimate]  # per hole of Fitted.holes
    review: ReviewCalibration
    placement: dict[str, Any]


def held_out(fit: Fitted, opts: TrainOptions) -> HeldOut:
    """Each hole answered as served (placement, residual) by the member that never trained
    on it; those answers score the run and calibrate the review priority."""
    answers, feats = _out_of_fold(fit.members, fit.batch, fit.fold_of, fit.readings,
                                  fit.rules, opts.spec)
    wrong = np.array([is_wrong(a.points, h.label) for a, h in zip(answers, fit.holes,
                                                                  strict=True)])
    n = fit.n_original
    placement = {"mode": opts.placement, "rig_offset_mm": fit.anchored.rig_offset_mm,
                 "labels": fit.anchored.summary(n),
                 "model": _model_residuals(answers[:n], fit.anchored, n)}
    return HeldOut(answers, fit_review(feats, wrong), placement)


def _out_of_fold(members: list[torch.nn.Module], batch: FeatureBatch, fold_of: np.ndarray,
                 readings: list[Reading | None], rules: list[DepthPoints], spec: FeatureSpec,
                 ) -> tuple[list[DepthEstimate], np.ndarray]:
    """Each hole answered by its held-out member, and the review features of that answer.

    One member has no spread: the spread features read the whole ensemble on that hole
    (members that trained on it agree more than unseen ones would: a conservative proxy)."""
    outs = [predict(m, batch.x, batch.scalars) for m in members]
    every = hole_outputs(np.stack([o[0] for o in outs]), np.stack([o[1] for o in outs]),
                         None, batch.origin_mm, spec.grid_mm)
    decoding = Decoding(place_on_ramps=True, residual=True)
    answers: list[DepthEstimate | None] = [None] * len(batch)
    feats = np.zeros((len(batch), len(ALL_FEATURES)))
    for fold, out in enumerate(outs):
        idx = np.flatnonzero(fold_of == fold)
        held = hole_outputs(out[0][None, idx], out[1][None, idx], out[2][None, idx],
                            batch.origin_mm[idx], spec.grid_mm)
        for j, i in enumerate(idx):
            answers[i], feats[i] = answer_with_features(replace(held[j], peers=every[i]),
                                                        readings[i], rules[i], decoding)
    return [a for a in answers if a is not None], feats


def _model_residuals(answers: list[DepthEstimate], anchored: Anchored, n: int) -> dict[str, Any]:
    """Per point: the median of (held-out answer - the label's anchor crossing) where both
    exist and the answer is on that ramp (within 0.5 mm of the label): what the model
    learnt to add to the convention."""
    out: dict[str, dict[str, float | int | None]] = {}
    for k, name in enumerate(POINT_NAMES):
        got = []
        for i in range(n):
            v, a = answers[i].points.get(name), anchored.anchor_mm[i, k]
            label = a + anchored.residual_mm[i, k]
            if v is not None and anchored.on_ramp[i, k] and abs(v - label) <= 0.5:
                got.append(v - a)
        out[name] = {"median_residual_mm": round(float(np.median(got)), 4) if got else None,
                     "n": len(got)}
    return out
