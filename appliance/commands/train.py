"""`appliance train`: a cross-validated ensemble from a dataset snapshot, optionally fine-tuned."""

from __future__ import annotations

import argparse

from appliance.commands._train_common import (
    add_hole_sources,
    add_training_options,
    has_holes,
    load_train_module,
)

FINETUNE_REPLAY = 64  # synthetic holes beside a rig's own (see TrainOptions.replay)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "train", help="train (or fine-tune) an ensemble and write a candidate model folder",
        description="Train one member per cross-validation fold on a dataset snapshot "
                    "(and/or synthetic holes), export to ONNX, write a model folder.")
    add_hole_sources(p)
    p.add_argument("--config", default=None, metavar="BEST_JSON",
                   help="the parameters of a search (`appliance tune`'s DIR/best.json): "
                        "learning rate, width, patch length, stem, head-phase epochs, "
                        "augmentation strength")
    p.add_argument("--out", required=True, help="candidate model folder to write")
    p.add_argument("--parent", default=None,
                   help="model folder to fine-tune from (member i starts from parent member i)")
    add_training_options(p, epochs=20, folds=5, replay=FINETUNE_REPLAY)
    p.add_argument("--version", default=None, help="version name (default: cand-<time>-<hash>)")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    if not has_holes(args, "train"):
        return 2
    run = load_train_module()
    if run is None:
        return 2
    return run.run_train(args)
