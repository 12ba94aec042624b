"""How many confirmed holes a new rig needs: fine-tune from the baseline on N of its holes,
score on its other holes (run by hand, needs ../shared and the train extra).

    python benchmarks/adapt.py [--n 10 20 40 80] [--reps 2] [--png docs/adapt.png]
                               [--reference OLD_MODEL_DIR]

The rigs (benchmarks/rigs.py) are made from the 120 real labelled logs of ../shared: another
drill's current scale, operators' constant offsets per point, and a practice that depends
on the signal. For each rig and N, `--reps` times: the source groups are shuffled, the first
groups that hold N holes give the N "confirmed" holes, and the holes of every other group are
scored (leave source groups out). The fine-tune is the product's own (appliance.train:
fit_ensemble with `appliance train`'s defaults: 5 members from the parent's, <= 10 epochs,
head first, learnt placement, one augmented copy per hole, 64 synthetic holes replayed
beside the rig's); answers are the engine's
(placement on the ramps, learnt residual). Prints MAE per point against the rig's own labels
and the share of holes with every presence right, and writes a PNG of both against N.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from rigs import RIGS, shared_holes

from appliance.commands.train import FINETUNE_REPLAY
from appliance.engine import Engine
from appliance.evaluation import evaluate
from appliance.home import baseline_model_dir
from appliance.points import POINT_NAMES, DepthPoints
from appliance.train.data import TrainHole
from appliance.train.heldout import held_out
from appliance.train.run import ensemble_answers
from appliance.train.train import TrainOptions, fit_ensemble


def split(holes: list[TrainHole], n: int, rng: np.random.Generator
          ) -> tuple[list[TrainHole], list[TrainHole]]:
    """N holes from the first shuffled groups that hold them; the other groups' holes."""
    groups = sorted({h.group for h in holes})
    order = [groups[i] for i in rng.permutation(len(groups))]
    taken: list[str] = []
    for g in order:
        taken.append(g)
        if sum(h.group in taken for h in holes) >= n:
            break
    pool = [h for h in holes if h.group in taken]
    pick = sorted(rng.choice(len(pool), size=min(n, len(pool)), replace=False))
    # each confirmed hole its own group: a rig's holes are the unit its folds split
    train = [TrainHole(pool[i].trace, pool[i].label, pool[i].hole_id, pool[i].hole_id)
             for i in pick]
    return train, [h for h in holes if h.group not in taken]


def score(points: list[DepthPoints], holes: list[TrainHole]) -> dict[str, float]:
    rep = evaluate(points, [h.label for h in holes])
    out = {p: (rep.points[p].mae_mm if rep.points[p].mae_mm is not None else float("nan"))
           for p in POINT_NAMES}
    out["presence"] = rep.overall.holes_presence_right or 0.0
    out["n"] = len(holes)
    return out


def served(model_dir: Path, holes: list[TrainHole]) -> list[DepthPoints]:
    engine = Engine.from_dir(model_dir)
    return [e.points for e in engine.estimate_many([h.trace for h in holes])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[10, 20, 40, 80])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--replay", type=int, default=FINETUNE_REPLAY,
                    help="synthetic holes beside the rig's (appliance train's default)")
    ap.add_argument("--parent", default=str(baseline_model_dir()))
    ap.add_argument("--reference", default=None,
                    help="another model folder scored on the untransformed logs beside it")
    ap.add_argument("--png", default="docs/adapt.png")
    ap.add_argument("--rigs", nargs="*", default=None, help="names of RIGS to run (default all)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    holes = shared_holes()
    print(f"{len(holes)} real labelled holes in {len({h.group for h in holes})} source groups")

    print("\nUntransformed logs, as served (MAE mm e/t/x, holes with every presence right):")
    for name, folder in (("baseline", args.parent), ("reference", args.reference)):
        if folder:
            s = score(served(Path(folder), holes), holes)
            print(f"  {name:9s} {folder}: {s['entry']:.4f} / {s['transition']:.4f} / "
                  f"{s['exit']:.4f}  presence {s['presence']:.3f}")

    results: dict[str, dict[int, list[dict[str, float]]]] = {}
    rig_names = args.rigs or list(RIGS)
    for rig_name in rig_names:
        rig = RIGS[rig_name]
        rig_holes = [rig(h) for h in holes]
        base = score(served(Path(args.parent), rig_holes), rig_holes)
        results[rig_name] = {0: [base]}
        print(f"\n{rig_name}: baseline as shipped {base['entry']:.3f} / {base['transition']:.3f}"
              f" / {base['exit']:.3f}  presence {base['presence']:.3f}")
        for n in args.n:
            for rep in range(args.reps):
                rng = np.random.default_rng(1000 * n + rep)
                train, test = split(rig_holes, n, rng)
                t0 = time.monotonic()
                opts = TrainOptions(epochs=args.epochs, threads=args.threads, augment=1,
                                    placement="learn", seed=rep, replay=args.replay)
                fit = fit_ensemble(train, opts, parent_dir=args.parent)
                review = held_out(fit, opts).review
                answers = ensemble_answers(fit.members, test, opts.spec, review)
                s = score([a.points for a in answers], test)
                results[rig_name].setdefault(n, []).append(s)
                print(f"  N={n:3d} rep {rep}: {s['entry']:.3f} / {s['transition']:.3f} / "
                      f"{s['exit']:.3f}  presence {s['presence']:.3f}  on {s['n']} holes "
                      f"({time.monotonic() - t0:.0f} s)", flush=True)
    table(results)
    plot(results, Path(args.png))


def mean_of(runs: list[dict[str, float]], key: str) -> float:
    return float(np.nanmean([r[key] for r in runs]))


def table(results: dict[str, dict[int, list[dict[str, float]]]]) -> None:
    print("\n| rig | N confirmed | entry MAE mm | transition MAE mm | exit MAE mm |"
          " holes with every presence right |")
    print("|---|---|---|---|---|---|")
    for rig, by_n in results.items():
        for n, runs in by_n.items():
            cells = " | ".join(f"{mean_of(runs, p):.3f}" for p in POINT_NAMES)
            label = "0 (baseline)" if n == 0 else str(n)
            print(f"| {rig} | {label} | {cells} | {mean_of(runs, 'presence'):.3f} |")


def plot(results: dict[str, dict[int, list[dict[str, float]]]], png: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        print("no PNG: pip install matplotlib")
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for rig, by_n in results.items():
        ns = sorted(by_n)
        worst = [max(mean_of(by_n[n], p) for p in POINT_NAMES) for n in ns]
        axes[0].plot(ns, worst, marker="o", label=rig)
        axes[1].plot(ns, [mean_of(by_n[n], "presence") for n in ns], marker="o", label=rig)
    axes[0].axhline(0.12, color="grey", ls="--", lw=1)
    axes[0].set(xlabel="confirmed holes of the rig (0: baseline as shipped)",
                ylabel="worst point's MAE, mm", title="Placement error on the rig's other holes")
    axes[0].set_yscale("log")
    axes[1].axhline(0.98, color="grey", ls="--", lw=1)
    axes[1].set(xlabel="confirmed holes of the rig (0: baseline as shipped)",
                ylabel="share of holes", title="Every presence right")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    print(f"\nwrote {png}")


if __name__ == "__main__":
    main()
