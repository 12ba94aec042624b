"""Training speed (run by hand, not by pytest).

    python benchmarks/train.py [--parent models/baseline] [--holes 300] [--epochs 10]
    python benchmarks/train.py --ray local [--folds 5]
    python benchmarks/train.py --device cuda --compare cpu [--dataset SNAPSHOT_DIR]

Default: fine-tunes every member of the parent on N labelled synthetic holes twice, full
schedule (head first, then everything at a lower rate) and head-only; prints seconds per
epoch and the wall time of each, and their ratio measured in the same run.
Targets: full fine-tune <= 20 min, head-only <= 3 min.

--ray ADDRESS: the same fine-tune with the folds in this process, then as Ray tasks (a local
cluster started for the run, its start-up included); prints both and their ratio.
Target on a 2-core machine: Ray <= 1.3x the local run for 5 folds.

--device D [--compare D2]: time per epoch on D (and on D2 in the same run, with the ratio);
the folder trained on D is then put through the integrity and parity gates (export and parity
always run on the CPU). benchmarks/gpu_check.sh runs this on a GPU box.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from appliance.gates.integrity import check_integrity
from appliance.gates.parity import check_parity
from appliance.home import baseline_model_dir
from appliance.train.data import from_snapshots, synthetic
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


def run(parent: Path, holes, opts: TrainOptions, keep: Path | None = None,
        ) -> tuple[float, list[float]]:
    clock = EpochClock()
    with tempfile.TemporaryDirectory() as tmp:
        out = keep or Path(tmp) / "cand"
        t0 = time.monotonic()
        clock.last = t0
        train_ensemble(holes, out, opts, parent_dir=parent,
                       progress=Progress(json_lines=True, stream=clock))
        return time.monotonic() - t0, clock.times


def per_epoch(times: list[float]) -> float:
    return sum(times) / max(len(times), 1)


def schedules(args: argparse.Namespace, holes, base: TrainOptions) -> None:
    full_s, full_epochs = run(args.parent, holes, base)
    head_s, head_epochs = run(args.parent, holes, replace(base, head_only=True))
    for name, total, ep in (("full", full_s, full_epochs), ("head-only", head_s, head_epochs)):
        print(f"{name:9s}: {total:7.1f} s total ({total / 60:.1f} min), {len(ep)} epochs, "
              f"{per_epoch(ep):.2f} s per epoch (incl. validation)")
    print(f"head-only / full wall time: {head_s / full_s:.2f}; per epoch: "
          f"{per_epoch(head_epochs) / per_epoch(full_epochs):.2f}")
    print("targets: full <= 20 min, head-only <= 3 min")


def ray_overhead(args: argparse.Namespace, holes, base: TrainOptions) -> None:
    local_s, local_epochs = run(args.parent, holes, base)
    ray_s, ray_epochs = run(args.parent, holes, replace(base, ray=args.ray))
    print(f"local   : {local_s:7.1f} s for {args.folds} folds, {len(local_epochs)} epochs")
    print(f"ray {args.ray:5s}: {ray_s:7.1f} s for {args.folds} folds, {len(ray_epochs)} epochs "
          "(cluster start-up included)")
    print(f"ray / local wall time: {ray_s / local_s:.2f} (target <= 1.3 for 5 folds on 2 cores)")


def devices(args: argparse.Namespace, holes, base: TrainOptions) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "cand"
        total, times = run(args.parent, holes, replace(base, device=args.device), keep=folder)
        print(f"{args.device:5s}: {total:7.1f} s, {len(times)} epochs, "
              f"{per_epoch(times):.2f} s per epoch")
        integrity, engine, probe = check_integrity(folder)
        print(f"integrity: {integrity.status} ({integrity.summary})")
        if engine is not None and probe is not None:
            parity = check_parity(engine, probe)
            print(f"parity (onnxruntime on the CPU vs the {args.device}-trained torch "
                  f"members): {parity.status} ({parity.summary})")
    if args.compare:
        other, other_times = run(args.parent, holes, replace(base, device=args.compare))
        print(f"{args.compare:5s}: {other:7.1f} s, {len(other_times)} epochs, "
              f"{per_epoch(other_times):.2f} s per epoch")
        print(f"per epoch {args.device} / {args.compare}: "
              f"{per_epoch(times) / per_epoch(other_times):.3f}; wall: {total / other:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parent", type=Path, default=baseline_model_dir())
    ap.add_argument("--holes", type=int, default=300, help="synthetic holes (no --dataset)")
    ap.add_argument("--dataset", action="append", default=None,
                    help="snapshot folder(s) to fine-tune on instead of synthetic holes")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=min(2, torch.get_num_threads()))
    ap.add_argument("--ray", default=None, help="compare a local run with Ray (local, auto)")
    ap.add_argument("--device", default=None, help="auto | cpu | cuda")
    ap.add_argument("--compare", default=None, help="a second device, timed in the same run")
    args = ap.parse_args()
    holes = (from_snapshots(args.dataset, args.folds).holes if args.dataset
             else synthetic(args.holes, 31337))
    base = TrainOptions(epochs=args.epochs, folds=args.folds, seed=5,
                        threads=1 if args.ray else args.threads)
    print(f"fine-tune from {args.parent.name} on {len(holes)} holes, {args.folds} folds, "
          f"<= {args.epochs} epochs per member, {base.threads} thread(s) per fold")
    if args.ray:
        ray_overhead(args, holes, base)
    elif args.device:
        devices(args, holes, base)
    else:
        schedules(args, holes, base)


if __name__ == "__main__":
    main()
