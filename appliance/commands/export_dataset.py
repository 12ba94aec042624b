"""`appliance export-dataset OUT_DIR`: a training snapshot of the labelled, non-exam holes."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from appliance.cli import EXIT_OK, EXIT_USAGE
from appliance.commands._common import add_home, add_json, print_json
from appliance.errors import ValidationError
from appliance.home import resolve_home
from appliance.store import Store


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "export-dataset",
        help="write a dataset snapshot (Parquet + manifest) for training",
        description="Write the labelled holes (latest label), without the exam set, to "
        "OUT_DIR (which must not exist or be empty).",
    )
    p.add_argument("out_dir", metavar="OUT_DIR", type=Path)
    p.add_argument("--rig", default=None,
                   help="this rig's name in the snapshot, for fleet training "
                        "(`appliance train --dataset A --dataset B`); default: the host name")
    add_home(p)
    add_json(p)
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from appliance.store.snapshot import export_dataset

    with Store.open(resolve_home(args.home)) as store:
        try:
            manifest = export_dataset(store, args.out_dir, rig=args.rig or socket.gethostname())
        except ValidationError as exc:
            print(f"appliance export-dataset: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if args.json:
        print_json({"out_dir": str(args.out_dir), **manifest})
    else:
        print(
            f"{manifest['n_holes']} holes ({manifest['n_samples']} samples) written to "
            f"{args.out_dir}; {manifest['n_exam_excluded']} exam holes left out; "
            f"content hash {manifest['content_hash'][:16]}"
        )
    return EXIT_OK
