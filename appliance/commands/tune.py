"""`appliance tune`: a hyperparameter search (Optuna; Ray Tune on a cluster) over the recipe."""

from __future__ import annotations

import argparse

from appliance.commands._train_common import (
    add_hole_sources,
    add_training_options,
    has_holes,
    load_train_module,
)
from appliance.commands.train import FINETUNE_REPLAY


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "tune", help="search hyperparameters: write DIR/best.json and DIR/trials.csv",
        description="Each trial trains the K folds with its parameters (learning rate, width, "
                    "patch length, stem dilations, head-phase epochs, augmentation strength) "
                    "and is scored on its out-of-fold answers: mean MAE of the three points "
                    "plus 1 mm per wrong presence. Optuna's TPE sampler with median pruning on "
                    "each epoch's validation loss; with --ray, Ray Tune with the same searcher. "
                    "The study is kept in DIR: run the same command again to resume. "
                    "Then: appliance train --config DIR/best.json ...")
    add_hole_sources(p)
    p.add_argument("--trials", type=int, default=20, help="trials to finish (default 20)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="the search's folder: study, trials.csv, best.json")
    p.add_argument("--parent", default=None,
                   help="tune a fine-tune from this model folder (its shapes are kept: "
                        "width, patch length and stem are not searched then)")
    add_training_options(p, epochs=20, folds=5, replay=FINETUNE_REPLAY)
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    if not has_holes(args, "tune"):
        return 2
    if args.trials < 1:
        print("appliance tune: --trials must be at least 1")
        return 2
    run = load_train_module()
    if run is None:
        return 2
    return run.run_tune(args)
