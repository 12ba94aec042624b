"""`appliance label HOLE_ID --entry MM|none --transition MM|none --exit MM|none --by NAME`."""

from __future__ import annotations

import argparse
import math
import sys

from appliance.cli import EXIT_OK, EXIT_USAGE
from appliance.commands._common import add_home, add_json, cli_actor, print_json
from appliance.errors import NotFoundError, ValidationError
from appliance.home import resolve_home
from appliance.points import DepthPoints
from appliance.store import Store


def point_value(text: str) -> float | None:
    """A depth in mm, or None for 'none' (the point is absent)."""
    if text.strip().lower() in ("none", "null", ""):
        return None
    try:
        value = float(text.replace(",", "."))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a depth in mm nor 'none'") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite depth")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "label",
        help="confirm a hole's entry/transition/exit depths",
        description="Append a confirmed label to a hole (earlier labels stay as history). "
        "Exit 2 when the hole is unknown or the points are invalid.",
    )
    p.add_argument("hole_id", metavar="HOLE_ID", help="hole id (or the file name it came from)")
    for name in ("entry", "transition", "exit"):
        p.add_argument(f"--{name}", required=True, type=point_value, metavar="MM|none",
                       help=f"{name} depth in mm, or 'none' when absent")
    p.add_argument("--by", required=True, metavar="NAME", help="who confirms the label")
    add_home(p)
    add_json(p)
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from appliance.services.labels import add_label, stored_estimate

    points = DepthPoints(args.entry, args.transition, args.exit)
    with Store.open(resolve_home(args.home)) as store:
        try:
            hole_id = _resolve(store, args.hole_id)
            # the same checks, stored estimate and audit entry as PUT /holes/{id}/label
            label_id = add_label(store, hole_id, points, args.by, cli_actor(),
                                 stored_estimate(store, hole_id))
        except (NotFoundError, ValidationError) as exc:
            print(f"appliance label: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if args.json:
        print_json({"label_id": label_id, "hole_id": hole_id, **points.as_dict(), "by": args.by})
    else:
        shown = ", ".join(f"{k} {'none' if v is None else v}" for k, v in points.as_dict().items())
        print(f"label {label_id} stored for hole {hole_id}: {shown} (by {args.by})")
    return EXIT_OK


def _resolve(store: Store, key: str) -> str:
    found = store.find_hole_by_source(key)
    if found is None:
        raise NotFoundError(f"no hole {key!r} (neither a hole id nor a known file name)")
    return found
