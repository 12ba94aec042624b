"""Options shared by `train` and `train-baseline`, and the lazy import of the train extra."""

from __future__ import annotations

import argparse
import sys
from typing import Protocol

TRAIN_EXTRA_MODULES = {"torch", "transformers", "safetensors", "onnxscript"}


def add_training_options(p: argparse.ArgumentParser, *, epochs: int, folds: int,
                         seed: int = 0, arch: str = "patchtsmixer", patience: int = 4,
                         placement: str = "learn", augment: int = 1, replay: int = 0) -> None:
    p.add_argument("--arch", choices=("patchtsmixer", "cnn"), default=arch)
    p.add_argument("--folds", type=int, default=folds, help=f"K of K-fold CV (default {folds})")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--head-only", action="store_true",
                   help="fine-tune the head only, backbone frozen (fast)")
    p.add_argument("--seed", type=int, default=seed)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (per fold)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: a CUDA GPU when torch sees one (mixed precision), else the "
                        "CPU; export and the parity check always run on the CPU "
                        "(default auto)")
    p.add_argument("--ray", default=None, metavar="local|auto|ADDRESS",
                   help="train each fold as a Ray task: local (a Ray cluster on this box), "
                        "auto (the cluster this box joined) or HOST:PORT / ray://HOST:PORT; "
                        "needs the cluster extra: pip install -e '.[cluster]'")
    p.add_argument("--patience", type=int, default=patience,
                   help="epochs without a better validation loss before a phase stops")
    p.add_argument("--placement", choices=("learn", "convention"), default=placement,
                   help="learn: the labels are the rig's practice, learnt as residuals from "
                        "the ramps' crossings; convention: the labels follow depth-points.md "
                        f"(default {placement})")
    p.add_argument("--augment", type=int, default=augment, metavar="K",
                   help="augmented copies of each hole: current gain x0.3-x3, no-load offset "
                        f"steps, noise (default {augment}; 0: none)")
    p.add_argument("--augment-strength", type=float, default=1.0,
                   help="0..1: how far augmentation goes (default 1)")
    p.add_argument("--replay", type=int, default=replay, metavar="N",
                   help="synthetic holes mixed into the training set to keep the parent's "
                        "choice of ramp on stacks the dataset does not show; their placement "
                        f"is not learnt from (default {replay})")
    p.add_argument("--progress-json", action="store_true",
                   help="print JSON-lines progress events on stdout (for the job runner)")


class TrainVerbs(Protocol):
    """What the training verbs call of appliance.train.run (the module satisfies it)."""

    def run_train(self, args: argparse.Namespace) -> int: ...

    def run_baseline(self, args: argparse.Namespace) -> int: ...

    def run_tune(self, args: argparse.Namespace) -> int: ...


def add_hole_sources(p: argparse.ArgumentParser) -> None:
    """Where `train` and `tune` take their holes from: snapshots and/or the generator."""
    p.add_argument("--dataset", action="append", default=None, metavar="SNAPSHOT_DIR",
                   help="dataset snapshot directory (`appliance export-dataset`); give it "
                        "once per rig to train one fleet model on several rigs' holes "
                        "(folds grouped by rig)")
    p.add_argument("--synthetic", type=int, default=0, metavar="N",
                   help="add N generated holes to the training set")


def has_holes(args: argparse.Namespace, verb: str) -> bool:
    """False (said in one line) when neither source was given."""
    if args.dataset or args.synthetic:
        return True
    print(f"appliance {verb}: give --dataset SNAPSHOT_DIR and/or --synthetic N")
    return False


def load_train_module() -> TrainVerbs | None:
    """appliance.train.run, imported only when a training verb runs: serving stays torch-free."""
    try:
        from appliance.train import run

        return run
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in TRAIN_EXTRA_MODULES:
            print(f"appliance: training needs {exc.name!r}, which is not installed; "
                  "install the train extra: pip install -e '.[train]' "
                  "(torch first, CPU build)", file=sys.stderr)
            return None
        raise
