"""Training speed on this CPU (run by hand, not by pytest).

    python benchmarks/train.py [--parent models/baseline] [--holes 300] [--epochs 10]

Fine-tunes every member of the parent on N labelled synthetic holes twice: full schedule
(head first, then everything at a lower rate) and head-only. Prints seconds per epoch and
the wall time of each, plus their ratio measured in the same run.
Targets: full fine-tune <= 20 min, head-only <= 3 min.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from appliance.home import baseline_model_dir
from appliance.train.data import synthetic
from appliance.train.progress import Progress
from appliance.train.train import TrainOptions, train_ensemble


class EpochClock:
    """A progress sink that records when each epoch ended."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.last = time.monotonic()

    def write(self, line: str) -> None:
        if '"event": "epoch"' in line:
            now = time.monotonic()
            self.times.append(now - self.last)
            self.last = now

    def flush(self) -> None:
        pass


def run(parent: Path, holes, epochs: int, head_only: bool, threads: int) -> tuple[float, list]:
    clock = EpochClock()
    opts = TrainOptions(epochs=epochs, head_only=head_only, threads=threads, seed=5)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        clock.last = t0
        train_ensemble(holes, Path(tmp) / "cand", opts, parent_dir=parent,
                       progress=Progress(json_lines=True, stream=clock))
        return time.monotonic() - t0, clock.times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parent", default=str(baseline_model_dir()))
    ap.add_argument("--holes", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=min(2, torch.get_num_threads()))
    args = ap.parse_args()
    holes = synthetic(args.holes, 31337)
    print(f"fine-tune from {args.parent} on {args.holes} synthetic holes, <= {args.epochs} "
          f"epochs per member, {args.threads} threads")
    full_s, full_epochs = run(Path(args.parent), holes, args.epochs, False, args.threads)
    head_s, head_epochs = run(Path(args.parent), holes, args.epochs, True, args.threads)
    for name, total, ep in (("full", full_s, full_epochs), ("head-only", head_s, head_epochs)):
        per = sum(ep) / max(len(ep), 1)
        print(f"{name:9s}: {total:7.1f} s total ({total / 60:.1f} min), {len(ep)} epochs, "
              f"{per:.2f} s per epoch (incl. validation)")
    per_head = sum(head_epochs) / max(len(head_epochs), 1)
    per_full = sum(full_epochs) / max(len(full_epochs), 1)
    print(f"head-only / full wall time: {head_s / full_s:.2f}; per epoch: "
          f"{per_head / per_full:.2f}")
    print("targets: full <= 20 min, head-only <= 3 min")


if __name__ == "__main__":
    main()
