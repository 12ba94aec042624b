"""`appliance tui`: the operator's terminal UI, a client of a running daemon."""

from __future__ import annotations

import argparse
import os

from tui.client import DEFAULT_URL


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "tui",
        help="the operator's terminal UI (talks to `appliance serve` over HTTP)",
        description="Review holes, confirm depth points, train, promote and roll back models.",
    )
    parser.add_argument("--url", default=None, help=f"daemon URL (default {DEFAULT_URL})")
    parser.add_argument(
        "--key", default=os.environ.get("APPLIANCE_KEY"),
        help="API key (default $APPLIANCE_KEY); create one with `appliance keys create NAME`",
    )
    parser.add_argument("--operator", default=None, help="operator name stored with labels")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from appliance.errors import ValidationError
    from tui.app import ApplianceApp
    from tui.settings import Settings

    try:
        settings = Settings.load()
    except ValueError as exc:
        raise ValidationError(f"TUI settings: {exc}") from exc
    if args.operator:
        settings.operator = args.operator
    app = ApplianceApp(url=args.url, key=args.key, settings=settings)
    return int(app.run() or 0)
