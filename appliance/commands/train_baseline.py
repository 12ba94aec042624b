"""`appliance train-baseline`: rebuild the shipped baseline (synthetic + real labelled logs)."""

from __future__ import annotations

import argparse

from appliance.commands._train_common import add_training_options, load_train_module

# The shipped baseline's recipe (the model card records what a run actually used).
BASELINE_SYNTHETIC = 1500
BASELINE_SEED = 20261128
BASELINE_EPOCHS = 16
BASELINE_PATIENCE = 3
BASELINE_ARCH = "patchtsmixer"
BASELINE_AUGMENT = 1  # one augmented copy of each hole: gain, offset steps, noise


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "train-baseline", help="reproduce the shipped baseline model folder",
        description="Train the baseline on synthetic holes plus, when ../shared is present, "
                    "the real labelled Setitec logs; write the folder with its model card.")
    p.add_argument("--out", default="models/baseline", help="model folder to write")
    p.add_argument("--synthetic", type=int, default=BASELINE_SYNTHETIC, metavar="N")
    p.add_argument("--no-real", action="store_true",
                   help="synthetic holes only, even when ../shared is present")
    p.add_argument("--exam", type=int, default=1000, metavar="N",
                   help="unseen synthetic holes to measure the ensemble on (model card)")
    p.add_argument("--version", default=None, help="version name (default: baseline-3)")
    p.add_argument("--recalibrate", action="store_true",
                   help="train nothing: refit the review priority of the folder at --out on "
                        "its own members' out-of-fold answers (after a review feature was "
                        "added); the folder must have been trained with these options")
    add_training_options(p, epochs=BASELINE_EPOCHS, folds=5, seed=BASELINE_SEED,
                         arch=BASELINE_ARCH, patience=BASELINE_PATIENCE,
                         placement="convention", augment=BASELINE_AUGMENT)
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    run = load_train_module()
    if run is None:
        return 2
    return run.run_baseline(args)
