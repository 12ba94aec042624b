"""`appliance synth --n N --out DIR`: synthetic Setitec logs with exact truth + labels.csv."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from appliance.cli import EXIT_OK, EXIT_USAGE
from appliance.commands._common import add_json, print_json

VARIANTS = ("v4", "v7", "v8", "v9", "v11")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "synth",
        help="write synthetic Setitec logs with exact truth and a labels.csv",
        description="Generate N synthetic holes (stacks of 1-3 layers, step changes, "
        "trailing exits, aborted cycles, ...) and write them as Setitec logs plus "
        "labels.csv (method=synthetic, notes=stack type). The same seed gives the same "
        "files, byte for byte.",
    )
    p.add_argument("--n", type=int, required=True, help="number of holes")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--variant", default="v9", choices=VARIANTS,
                   help="Setitec file layout (default v9)")
    add_json(p)
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from appliance.synth import generate
    from appliance.synth.files import write_dataset

    if args.n < 1:
        print("appliance synth: --n must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    holes = generate(args.n, args.seed)
    labels = write_dataset(holes, Path(args.out), variant=args.variant)
    stacks: dict[str, int] = {}
    for h in holes:
        stacks[h.spec.stack_type] = stacks.get(h.spec.stack_type, 0) + 1
    summary = {"n": len(holes), "out": str(Path(args.out)), "labels": str(labels),
               "variant": args.variant, "seed": args.seed, "stacks": stacks}
    if args.json:
        print_json(summary)
    else:
        print(f"wrote {len(holes)} synthetic holes ({args.variant}) and {labels}")
        for stack, n in sorted(stacks.items()):
            print(f"  {stack:<12} {n}")
    return EXIT_OK
