"""K-fold cross-validated ensemble training, fine-tuning from a parent, resumable by fold.

Read top to bottom: options, loss, folds, one member's fit, the ensemble run.
Member i is trained on every fold but i and early-stopped on fold i; the K members
together are the ensemble. A finished fold is checkpointed in a work area next to the
output folder, so a killed run restarts at the first unfinished fold.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from appliance.errors import ValidationError
from appliance.estimators.heuristic import Reading, estimate_heuristic, read_trace
from appliance.estimators.placement import Anchored, anchor_labels
from appliance.evaluation import evaluate
from appliance.features import (
    FeatureBatch,
    FeatureSpec,
    make_batch,
    target_positions,
)
from appliance.points import POINT_NAMES, DepthPoints
from appliance.synth import generate
from appliance.train.augment import augment
from appliance.train.data import TrainHole, check_holes, dataset_hash
from appliance.train.devices import autocast, grad_scaler, resolve_device
from appliance.train.export import read_manifest, write_model_folder
from appliance.train.heldout import held_out
from appliance.train.model import ModelConfig, build_model, shift_placement
from appliance.train.progress import Progress


@dataclass
class TrainOptions:
    arch: str = "patchtsmixer"
    folds: int = 5
    epochs: int = 20
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 4  # epochs without a better validation loss before a phase stops
    head_only: bool = False  # fine-tune: train the head only (backbone frozen throughout)
    head_epochs: int | None = None  # fine-tune: frozen-backbone epochs first (default epochs//3)
    finetune_lr_factor: float = 0.3  # fine-tune: rate of the unfrozen phase relative to lr
    sigma_cells: float = 1.0  # width of the soft position target, in grid cells
    logit_penalty: float = 1e-3  # see point_loss
    # "learn": the labels are the rig's own practice, learnt as residuals from the ramps'
    # crossings (appliance.estimators.placement); "convention": the labels follow
    # depth-points.md by definition (the baseline's synthetic truth and checked labels),
    # so every residual target is 0
    placement: str = "learn"
    residual_weight: float = 20.0  # of the residual's Huber loss (mm) against the rest
    augment: int = 0  # augmented copies of each training hole (appliance.train.augment)
    augment_strength: float = 1.0
    # synthetic holes mixed into a fine-tune (their placement not learnt from): a rig's few
    # holes of a few stacks otherwise pull the parent's choice of ramp away on the stacks
    # they do not show (measured: a transition MAE of 0.4-0.5 mm on other sources after 10-40
    # holes, against 0.09 mm for the parent)
    replay: int = 0
    seed: int = 0
    threads: int = 1
    device: str = "cpu"  # auto | cpu | cuda (appliance.train.devices)
    ray: str | None = None  # None: folds in this process; else appliance.train.cluster
    version: str | None = None
    probe_size: int = 8
    model: ModelConfig = field(default_factory=ModelConfig)
    spec: FeatureSpec = field(default_factory=FeatureSpec)

    def key_dict(self) -> dict[str, Any]:
        """What must match for a killed run's fold checkpoints to be reused."""
        d = asdict(self)
        d["model"] = self.model.to_dict()
        d["spec"] = self.spec.to_dict()
        # where a fold trained does not change what it is: a run resumes across them
        for k in ("threads", "device", "ray", "version", "probe_size"):
            d.pop(k)
        return d


# ---------------------------------------------------------------- loss

def point_loss(scores: torch.Tensor, presence_logits: torch.Tensor, pos: torch.Tensor,
               present: torch.Tensor, usable: torch.Tensor, sigma: float,
               logit_penalty: float = 0.0) -> torch.Tensor:
    """Cross-entropy of the scores over positions against a Gaussian soft target at the true
    (fractional) position, for present points only; plus BCE on presence for all points.

    logit_penalty * mean(scores^2) keeps the logits small (+-15 rather than +-60): softmax
    needs no more, and float32 parity of onnxruntime vs torch (<= 1e-4 absolute) scales with
    their magnitude."""
    length = scores.shape[-1]
    grid = torch.arange(length, dtype=scores.dtype, device=scores.device)
    target = torch.exp(-0.5 * ((grid[None, None, :] - pos[..., None]) / sigma) ** 2)
    target = target / target.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    ce = -(target * F.log_softmax(scores, dim=-1)).sum(dim=-1)  # [B, 3]
    ce = (ce * usable).sum() / usable.sum().clamp_min(1.0)
    bce = F.binary_cross_entropy_with_logits(presence_logits, present)
    return ce + bce + logit_penalty * scores.pow(2).mean()


RESIDUAL_CELLS = 2  # the residual is supervised this many cells either side of the anchor
HUBER_MM = 0.1


def residual_loss(offset: torch.Tensor, pos: torch.Tensor, residual: torch.Tensor,
                  usable: torch.Tensor) -> torch.Tensor:
    """Huber loss of the offset map read around each anchor against the label's residual:
    serving reads it at the crossing the points are snapped to, which is the anchor, give or
    take a cell."""
    length = offset.shape[-1]
    shifts = torch.arange(-RESIDUAL_CELLS, RESIDUAL_CELLS + 1, device=offset.device)
    cells = (pos.round().long()[..., None] + shifts).clamp(0, length - 1)  # [B, 3, W]
    got = torch.gather(offset, 2, cells)
    err = F.huber_loss(got, residual[..., None].expand_as(got), reduction="none",
                       delta=HUBER_MM).mean(dim=-1)
    return (err * usable).sum() / usable.sum().clamp_min(1.0)


# ---------------------------------------------------------------- folds

def assign_folds(groups: list[str], k: int, seed: int) -> np.ndarray:
    """Fold index per hole; all holes of a group share a fold. Groups are shuffled with the
    seed, then placed largest first into the currently smallest fold (balanced sizes)."""
    uniq = sorted(set(groups))
    if len(uniq) < k:
        raise ValidationError(f"{k} folds need at least {k} groups, got {len(uniq)}")
    rng = np.random.default_rng(seed)
    order = [uniq[i] for i in rng.permutation(len(uniq))]
    sizes = {g: 0 for g in uniq}
    for g in groups:
        sizes[g] += 1
    order.sort(key=lambda g: -sizes[g])  # stable: equal sizes keep the shuffled order
    fold_of: dict[str, int] = {}
    load = np.zeros(k, dtype=np.int64)
    for g in order:
        f = int(np.argmin(load))
        fold_of[g] = f
        load[f] += sizes[g]
    return np.array([fold_of[g] for g in groups], dtype=np.int64)


# ---------------------------------------------------------------- tensors

@dataclass
class Tensors:
    x: torch.Tensor
    scalars: torch.Tensor
    pos: torch.Tensor  # [N, 3] fractional grid position of each point's anchor
    present: torch.Tensor
    usable: torch.Tensor
    residual: torch.Tensor  # [N, 3] mm from the anchor to the label
    residual_usable: torch.Tensor  # [N, 3] 1 where the residual is the rig's to learn

    @classmethod
    def of(cls, batch: FeatureBatch, labels: list[DepthPoints], spec: FeatureSpec,
           anchored: Anchored, learn_residual: np.ndarray | None = None) -> Tensors:
        """Position targets on the anchors (the label where it is on no ramp), residuals.
        learn_residual [N]: False for holes whose placement is not the rig's (replay)."""
        anchors = [DepthPoints(*(None if np.isnan(v) else float(v) for v in row))
                   for row in anchored.anchor_mm]
        pos, present, usable = target_positions(anchors, batch, spec)
        _, label_present, _ = target_positions(labels, batch, spec)
        residual = np.nan_to_num(anchored.residual_mm, nan=0.0)
        mask = np.ones(len(labels)) if learn_residual is None else learn_residual.astype(float)
        return cls(torch.from_numpy(batch.x), torch.from_numpy(batch.scalars),
                   torch.from_numpy(pos).float(), torch.from_numpy(label_present).float(),
                   torch.from_numpy(usable).float(), torch.from_numpy(residual).float(),
                   torch.from_numpy(usable * mask[:, None]).float())

    def to(self, device: torch.device) -> Tensors:
        return Tensors(*(t.to(device) for t in self.arrays()))

    def arrays(self) -> tuple[torch.Tensor, ...]:
        return (self.x, self.scalars, self.pos, self.present, self.usable, self.residual,
                self.residual_usable)

    def take(self, idx: np.ndarray) -> tuple[torch.Tensor, ...]:
        i = torch.as_tensor(idx, dtype=torch.long, device=self.x.device)
        return (self.x[i], self.scalars[i], self.pos[i], self.present[i], self.usable[i],
                self.residual[i], self.residual_usable[i])


def batch_loss(model: torch.nn.Module, data: Tensors, idx: np.ndarray,
               opts: TrainOptions) -> torch.Tensor:
    x, s, pos, present, usable, residual, residual_usable = data.take(idx)
    with autocast(x.device):
        scores, presence, offset = model(x, s)
    # the losses in float32: a softmax over 1,088 positions in half precision loses the peak
    scores, presence, offset = scores.float(), presence.float(), offset.float()
    return (point_loss(scores, presence, pos, present, usable, opts.sigma_cells,
                       opts.logit_penalty)
            + opts.residual_weight * residual_loss(offset, pos, residual, residual_usable))


@torch.no_grad()
def eval_loss(model: torch.nn.Module, data: Tensors, idx: np.ndarray, opts: TrainOptions) -> float:
    model.eval()
    total, n = 0.0, 0
    for start in range(0, len(idx), 128):
        part = idx[start:start + 128]
        total += float(batch_loss(model, data, part, opts)) * len(part)
        n += len(part)
    return total / max(n, 1)


# ---------------------------------------------------------------- one member

def phases(opts: TrainOptions, from_parent: bool) -> list[tuple[str, int, float, bool]]:
    """(name, epochs, lr, backbone frozen). Fine-tunes train the head first, then everything
    at a lower rate so the pretrained backbone is not wrecked by a randomly aligned head."""
    if not from_parent:
        return [("full", opts.epochs, opts.lr, False)]
    if opts.head_only:
        return [("head", opts.epochs, opts.lr, True)]
    head = opts.head_epochs if opts.head_epochs is not None else max(1, opts.epochs // 3)
    head = min(head, opts.epochs)
    out = [("head", head, opts.lr, True)]
    if opts.epochs - head > 0:
        out.append(("full", opts.epochs - head, opts.lr * opts.finetune_lr_factor, False))
    return out


def init_member(opts: TrainOptions, fold: int,
                parent_state: dict[str, Any] | None) -> torch.nn.Module:
    """Member `fold`: seeded fresh weights, or its parent member's."""
    torch.manual_seed(opts.seed * 1000 + fold)
    model = build_model(opts.arch, opts.model)
    if parent_state is not None:
        model.load_parent_state(parent_state)
    return model


@torch.no_grad()
def start_placement(model: torch.nn.Module, data: Tensors, idx: np.ndarray) -> list[float]:
    """Move the member's placement by the median, per point, of what it misses on these
    holes' labels (label residual - its offset at the anchor): a rig's constant offset is
    then there from the first step, which a few hundred small steps on 40 holes would not
    reach; gradient descent learns what depends on the signal. Returns the shift (mm)."""
    model.eval()
    missed: list[list[float]] = [[], [], []]
    for start in range(0, len(idx), 128):
        x, s, pos, _, _, residual, usable = data.take(idx[start:start + 128])
        with autocast(x.device):
            offset = model(x, s)[2].float()
        cells = pos.round().long().clamp(0, offset.shape[-1] - 1)
        got = torch.gather(offset, 2, cells[..., None])[..., 0]
        for k in range(3):
            use = usable[:, k] > 0
            missed[k] += (residual[use, k] - got[use, k]).tolist()
    shift = [float(np.median(m)) if len(m) >= 3 else 0.0 for m in missed]
    shift_placement(model, shift)
    return shift


def fit_member(model: torch.nn.Module, data: Tensors, train_idx: np.ndarray,
               val_idx: np.ndarray, opts: TrainOptions, fold: int, from_parent: bool,
               on_epoch: Callable[[int, float, float], None]) -> list[dict[str, Any]]:
    rng = np.random.default_rng(opts.seed * 1000 + fold)
    scaler = grad_scaler(data.x.device)
    history: list[dict[str, Any]] = []
    if opts.placement == "learn":
        start_placement(model, data, train_idx)
    # A rig's few confirmed holes must still give the optimiser steps to take: smaller
    # batches when the set is small (at least ~8 steps an epoch).
    batch_size = int(min(opts.batch_size, max(4, math.ceil(len(train_idx) / 8))))
    for phase, n_epochs, lr, frozen in phases(opts, from_parent):
        # Each phase keeps its own best epoch, even when the parent or the previous phase
        # scored better on this fold: the gates judge a candidate against the active model.
        best_loss = math.inf
        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        for p in model.backbone.parameters():
            p.requires_grad_(not frozen)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=opts.weight_decay)
        steps = n_epochs * math.ceil(len(train_idx) / batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1),
                                                    pct_start=0.15)
        stale = 0
        for _ in range(n_epochs):
            model.train()
            order = train_idx[rng.permutation(len(train_idx))]
            total = 0.0
            for start in range(0, len(order), batch_size):
                part = order[start:start + batch_size]
                loss = batch_loss(model, data, part, opts)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(opt)  # clip the true gradients, not the scaled ones
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                scaler.step(opt)
                scaler.update()
                sched.step()
                total += loss.item() * len(part)
            train_loss = total / len(order)
            val_loss = eval_loss(model, data, val_idx, opts)
            history.append({"phase": phase, "epoch": len(history), "train_loss": train_loss,
                            "val_loss": val_loss})
            on_epoch(len(history) - 1, train_loss, val_loss)
            if val_loss < best_loss - 1e-5:
                best_loss, stale = val_loss, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
                if stale >= opts.patience:
                    break
        model.load_state_dict(best_state)
    for p in model.parameters():
        p.requires_grad_(True)
    return history


# ---------------------------------------------------------------- metrics

def _as_points(row: np.ndarray) -> DepthPoints:
    return DepthPoints(*(None if np.isnan(v) else float(v) for v in row))


def point_metrics(pred: np.ndarray, truth: np.ndarray,
                  groups: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """pred/truth [N, 3] in mm, NaN for absent, scored by the evaluation harness."""
    return evaluate([_as_points(r) for r in pred], [_as_points(r) for r in truth],
                    groups).as_dict()


def truth_array(holes: list[TrainHole]) -> np.ndarray:
    return np.array([[np.nan if h.label.get(n) is None else h.label.get(n) for n in POINT_NAMES]
                     for h in holes], dtype=np.float64)


# ---------------------------------------------------------------- the ensemble run

def work_dir_for(out_dir: Path) -> Path:
    return out_dir.parent / f".{out_dir.name}.work"


def _load_parent(parent_dir: Path,
                 opts: TrainOptions) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    manifest = read_manifest(parent_dir)
    opts.arch = manifest["architecture"]
    opts.model = ModelConfig.from_dict(manifest["config"])
    opts.spec = FeatureSpec.from_dict(manifest["feature_spec"])
    states = [load_file(str(parent_dir / w)) for w in manifest["weights"]]
    return manifest, states


@dataclass
class Fitted:
    """What fit_ensemble leaves for scoring, calibrating and exporting."""

    members: list[torch.nn.Module]
    holes: list[TrainHole]  # the originals first, then their augmented copies
    n_original: int
    batch: FeatureBatch
    fold_of: np.ndarray
    readings: list[Reading | None]
    rules: list[DepthPoints]
    anchored: Anchored
    fold_reports: list[dict[str, Any]]
    parent_version: str | None
    dataset_hash: str


@dataclass
class FoldResult:
    """One trained member: its weights (on the CPU) and its fold's report."""

    fold: int
    state: dict[str, torch.Tensor]
    report: dict[str, Any]


EpochSink = Callable[[int, int, float, float], None]  # fold, epoch, train loss, val loss


def train_fold(data: Tensors, fold_of: np.ndarray, fold: int, opts: TrainOptions,
               parent_state: dict[str, Any] | None, on_epoch: EpochSink) -> FoldResult:
    """Member `fold` on opts.device, trained on every other fold and early-stopped on this
    one. The same function runs in this process or as a Ray task (appliance.train.cluster)."""
    device = resolve_device(opts.device)
    torch.set_num_threads(max(1, opts.threads))
    train_idx = np.flatnonzero(fold_of != fold)
    val_idx = np.flatnonzero(fold_of == fold)
    started = time.monotonic()
    model = init_member(opts, fold, parent_state).to(device)
    history = fit_member(model, data.to(device), train_idx, val_idx, opts, fold,
                         parent_state is not None,
                         lambda epoch, tr, va: on_epoch(fold, epoch, tr, va))
    report = {"fold": fold, "n_train": int(len(train_idx)), "n_val": int(len(val_idx)),
              "epochs_run": len(history),
              "best_val_loss": min(h["val_loss"] for h in history) if history else None,
              "history": history, "duration_s": round(time.monotonic() - started, 2),
              "device": device.type}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return FoldResult(fold, state, report)


class EpochClock:
    """Epoch events with the run's progress and ETA, whichever order folds report in (Ray
    runs several at once)."""

    def __init__(self, progress: Progress, folds: int, epochs: int, done_folds: int) -> None:
        self.progress, self.epochs = progress, epochs
        self.total = folds * epochs
        self.start_done = done_folds * epochs
        self.seen: dict[int, int] = {}
        self.started = time.monotonic()

    def done(self) -> int:
        return self.start_done + sum(self.seen.values())

    def epoch(self, fold: int, epoch: int, train_loss: float, val_loss: float) -> None:
        self.seen[fold] = min(max(self.seen.get(fold, 0), epoch + 1), self.epochs)
        done = self.done()
        rate = (time.monotonic() - self.started) / max(done - self.start_done, 1)
        self.progress.emit("epoch", fold=fold, epoch=epoch, train_loss=train_loss,
                           val_loss=val_loss, eta_s=round(rate * max(self.total - done, 0), 1),
                           epochs_done=done, epochs_total=self.total)

    def fold_done(self, fold: int) -> None:
        self.seen[fold] = self.epochs  # an early-stopped fold is finished all the same


def _load_fold(work: Path, fold: int) -> FoldResult | None:
    ckpt, meta = work / f"fold{fold}.safetensors", work / f"fold{fold}.json"
    if not (ckpt.exists() and meta.exists()):
        return None
    report = json.loads(meta.read_text())
    report["resumed"] = True
    return FoldResult(fold, load_file(str(ckpt)), report)


def run_key(ds_hash: str, opts: TrainOptions, parent: str | None) -> dict[str, Any]:
    """What a run's checkpoints belong to: a work folder of another key is not resumed."""
    return {"dataset_hash": ds_hash, "options": opts.key_dict(), "parent": parent}


def claim_work(work: Path, key: dict[str, Any]) -> None:
    """Make `work` the checkpoint folder of the run `key`: kept when it already is one,
    emptied when it holds another run's."""
    key_file = work / "run.json"
    if work.exists() and (not key_file.exists() or json.loads(key_file.read_text()) != key):
        shutil.rmtree(work)  # checkpoints of another run: not resumable
    work.mkdir(parents=True, exist_ok=True)
    key_file.write_text(json.dumps(key, sort_keys=True))


def save_fold(work: Path, result: FoldResult) -> None:
    """The weights first, renamed into place, then the report: a fold counts as finished only
    once both are there."""
    ckpt = work / f"fold{result.fold}.safetensors"
    tmp = ckpt.with_suffix(".tmp")
    save_file(result.state, str(tmp))
    os.replace(tmp, ckpt)
    (work / f"fold{result.fold}.json").write_text(json.dumps(result.report))


def fit_ensemble(holes: list[TrainHole], opts: TrainOptions, work: Path | None = None,
                 parent_dir: str | Path | None = None, progress: Progress | None = None,
                 resume_only: bool = False) -> Fitted:
    """Train opts.folds members on `holes` (plus opts.augment augmented copies of each).
    With `work`, each finished fold is checkpointed there and a rerun resumes from it;
    `resume_only`: every fold must be resumed from `work` (RuntimeError before any training
    otherwise)."""
    if not opts.ray:
        return _fit_ensemble(holes, opts, work, parent_dir, progress, resume_only)
    from appliance.train.cluster import session

    with session(opts):
        return _fit_ensemble(holes, opts, work, parent_dir, progress, resume_only)


def shape_model_to_spec(opts: TrainOptions) -> None:
    """The model's input sizes are the feature spec's (the run's options record them so)."""
    spec = opts.spec
    opts.model.in_channels, opts.model.n_scalars = spec.n_channels, spec.n_scalars
    opts.model.length = spec.length


def _fit_ensemble(holes: list[TrainHole], opts: TrainOptions, work: Path | None,
                  parent_dir: str | Path | None, progress: Progress | None,
                  resume_only: bool = False) -> Fitted:
    progress = progress or Progress()
    if not opts.ray:  # a missing GPU is said before minutes of feature building (a Ray
        resolve_device(opts.device)  # cluster's GPUs are checked where they are)
    torch.set_num_threads(max(1, opts.threads))
    check_holes(holes, opts.folds)
    parent_manifest: dict[str, Any] | None = None
    parent_states: list[dict[str, Any]] = []
    if parent_dir is not None:
        parent_manifest, parent_states = _load_parent(Path(parent_dir), opts)
    spec = opts.spec
    shape_model_to_spec(opts)

    ds_hash = dataset_hash(holes)
    n_original = len(holes)
    # Where the labels sit from the ramps' crossings: read on the original traces (an
    # augmented copy keeps its original's anchors: a crossing does not move with the gain).
    readings = [read_trace(h.trace) for h in holes]
    anchored = anchor_labels([h.label for h in holes], readings,
                             learn=opts.placement == "learn")
    learn_residual = np.ones(n_original, dtype=bool)
    if opts.replay > 0:
        holes, readings, anchored, learn_residual = _with_replay(holes, readings, anchored,
                                                                 opts)
    holes, readings, anchored, learn_residual = _with_copies(holes, readings, anchored,
                                                             learn_residual, opts)
    progress.emit("features", holes=len(holes), original=n_original)
    # Features: the same numpy function the serving engine calls.
    rules = [estimate_heuristic(h.trace, r).points for h, r in zip(holes, readings,
                                                                     strict=True)]
    batch = make_batch([h.trace for h in holes], spec, readings, rules)
    data = Tensors.of(batch, [h.label for h in holes], spec, anchored, learn_residual)
    fold_of = assign_folds([h.group for h in holes], opts.folds, opts.seed)
    if work is not None:
        claim_work(work, run_key(ds_hash, opts,
                                 parent_manifest["version"] if parent_manifest else None))

    def parent_for(fold: int) -> dict[str, Any] | None:
        """Member i starts from parent member i (mod the parent's count)."""
        return parent_states[fold % len(parent_states)] if parent_states else None

    results: dict[int, FoldResult] = {}
    for fold in range(opts.folds):
        resumed = _load_fold(work, fold) if work is not None else None
        if resumed is not None:
            results[fold] = resumed
            progress.emit("fold_done", fold=fold, best_val_loss=resumed.report["best_val_loss"],
                          epochs_run=resumed.report["epochs_run"], resumed=True,
                          folds_done=len(results), folds_total=opts.folds)
    todo = [f for f in range(opts.folds) if f not in results]
    if todo and resume_only:
        raise RuntimeError(f"folds {todo} have no checkpoint of this run to resume")
    clock = EpochClock(progress, opts.folds, opts.epochs, done_folds=len(results))
    if opts.ray and todo:
        from appliance.train.cluster import train_folds_on_ray

        finished = train_folds_on_ray(data, fold_of, todo, opts, parent_for, clock.epoch)
    else:
        finished = (train_fold(data, fold_of, f, opts, parent_for(f), clock.epoch)
                    for f in todo)
    for result in finished:
        if work is not None:
            save_fold(work, result)
        result.report["resumed"] = False
        results[result.fold] = result
        clock.fold_done(result.fold)
        progress.emit("fold_done", fold=result.fold,
                      best_val_loss=result.report["best_val_loss"],
                      epochs_run=result.report["epochs_run"], resumed=False,
                      folds_done=len(results), folds_total=opts.folds)
    members: list[torch.nn.Module] = []
    for fold in range(opts.folds):
        model = build_model(opts.arch, opts.model)
        model.load_state_dict(results[fold].state)
        members.append(model)
    fold_reports = [results[f].report for f in range(opts.folds)]
    return Fitted(members, holes, n_original, batch, fold_of, readings, rules, anchored,
                  fold_reports, parent_manifest["version"] if parent_manifest else None,
                  ds_hash)


def train_ensemble(holes: list[TrainHole], out_dir: str | Path, opts: TrainOptions,
                   parent_dir: str | Path | None = None, progress: Progress | None = None,
                   card_fn: Callable[[dict[str, Any]], str] | None = None,
                   evaluate_fn: Callable[[list[Any], FeatureSpec], dict[str, Any]] | None = None,
                   extra_training: dict[str, Any] | None = None) -> dict[str, Any]:
    """fit_ensemble, held_out, then export the members and write the model folder at
    out_dir. A finished fold is checkpointed next to out_dir (resumable). Returns the
    manifest."""
    progress = progress or Progress()
    out_dir = Path(out_dir)
    t0 = time.monotonic()
    work = work_dir_for(out_dir)
    fit = fit_ensemble(holes, opts, work, parent_dir, progress)
    spec, n_original = opts.spec, fit.n_original
    held = held_out(fit, opts)
    progress.emit("calibrated", holes=len(fit.holes), wrong=held.review.n_wrong,
                  brier=held.review.brier)
    oof = np.array([[np.nan if v is None else v for v in a.points.as_dict().values()]
                    for a in held.answers[:n_original]], dtype=np.float64).reshape(-1, 3)
    originals = fit.holes[:n_original]
    sources = [{"source": h.group.split(":")[0]} for h in originals]
    n_sources = len({g["source"] for g in sources})
    # Per-source figures only for named sources (synthetic, tuhh-v4, ...), not one per hole.
    metrics = {"cv": point_metrics(oof, truth_array(originals),
                                   sources if 1 < n_sources <= 30 else None)}
    if evaluate_fn is not None:
        metrics.update(evaluate_fn(fit.members, spec))

    # Probe: a seeded sample of real feature inputs (the gates replay it through onnxruntime).
    rng = np.random.default_rng(opts.seed)
    probe_idx = np.sort(rng.choice(n_original, size=min(opts.probe_size, n_original),
                                   replace=False))
    reports = fit.fold_reports
    training = {
        "folds": opts.folds, "epochs": opts.epochs, "head_only": opts.head_only,
        "seed": opts.seed, "arch": opts.arch, "n_holes": n_original,
        "n_augmented": len(fit.holes) - n_original,
        "n_groups": len({h.group for h in fit.holes}), "options": opts.key_dict(),
        "fold_reports": [{k: v for k, v in r.items() if k != "history"} for r in reports],
        "histories": [r.get("history", []) for r in reports],
        "duration_s": round(time.monotonic() - t0, 1),
        "device": opts.device, "ray": opts.ray,  # where it trained (each fold: fold_reports)
        **(extra_training or {}),
    }
    created = datetime.now(UTC)
    version = opts.version or f"cand-{created:%Y%m%dT%H%M%SZ}-{fit.dataset_hash[:6]}"
    manifest = write_model_folder(
        out_dir, fit.members, arch=opts.arch, config=opts.model.to_dict(), spec=spec,
        probe=_subset(fit.batch, probe_idx), version=version, parent=fit.parent_version,
        dataset_hash=fit.dataset_hash, training=training, metrics=metrics, created_at=created,
        card_fn=card_fn, placement=held.placement, review=held.review.to_dict())
    shutil.rmtree(work, ignore_errors=True)
    progress.emit("done", out=str(out_dir), version=version,
                  duration_s=round(time.monotonic() - t0, 1), metrics=metrics["cv"])
    return manifest


REPLAY_SEED = 90_210  # the replayed synthetic holes: never the baseline's training seed


def _with_replay(holes: list[TrainHole], readings: list[Reading | None], anchored: Anchored,
                 opts: TrainOptions) -> tuple[list[TrainHole], list[Reading | None], Anchored,
                                              np.ndarray]:
    """The rig's holes plus opts.replay synthetic ones on the convention, each its own group;
    their placement is not learnt from (learn_residual False)."""
    replay = [TrainHole(h.trace, h.truth, f"replay:{i}", f"replay-{i}")
              for i, h in enumerate(generate(opts.replay, REPLAY_SEED + opts.seed))]
    replay_readings = [read_trace(h.trace) for h in replay]
    theirs = anchor_labels([h.label for h in replay], replay_readings, learn=False)
    joined = Anchored(np.concatenate([anchored.anchor_mm, theirs.anchor_mm]),
                      np.concatenate([anchored.residual_mm, theirs.residual_mm]),
                      np.concatenate([anchored.on_ramp, theirs.on_ramp]),
                      anchored.rig_offset_mm)
    learn = np.concatenate([np.ones(len(holes), dtype=bool), np.zeros(len(replay), dtype=bool)])
    return holes + replay, readings + replay_readings, joined, learn


def _with_copies(holes: list[TrainHole], readings: list[Reading | None], anchored: Anchored,
                 learn_residual: np.ndarray, opts: TrainOptions,
                 ) -> tuple[list[TrainHole], list[Reading | None], Anchored, np.ndarray]:
    """The holes plus opts.augment augmented copies of each (same group, same anchors)."""
    if opts.augment <= 0:
        return holes, readings, anchored, learn_residual
    rng = np.random.default_rng(opts.seed + 7919)
    copies = [TrainHole(augment(h.trace, h.label, rng, opts.augment_strength), h.label,
                        h.group, f"{h.hole_id}~aug{c}")
              for c in range(opts.augment) for h in holes]
    reps = opts.augment + 1

    def tile(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a] * reps)

    return (holes + copies, readings + [read_trace(h.trace) for h in copies],
            Anchored(tile(anchored.anchor_mm), tile(anchored.residual_mm),
                     tile(anchored.on_ramp), anchored.rig_offset_mm), tile(learn_residual))


def _subset(batch: FeatureBatch, idx: np.ndarray) -> FeatureBatch:
    return FeatureBatch(batch.x[idx], batch.scalars[idx], batch.origin_mm[idx],
                        tuple(batch.sources[i] for i in idx))
