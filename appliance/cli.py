"""The `appliance` command.

Each verb lives in its own module under appliance/commands/ and exposes
`register(subparsers)`; the handler it sets as `func` returns the exit code.
Exit codes: 0 ok, 2 usage error, 3 some input rejected, 4 refused (gate, lock, disk full,
...).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from appliance import commands
from appliance.errors import ApplianceError, disk_full

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_REJECTED = 3
EXIT_REFUSED = 4


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appliance",
        description="Rig-side training appliance for drilling depth estimation.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"appliance.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except ApplianceError as exc:
        print(f"appliance {args.command}: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_REFUSED)
    except Exception as exc:
        # a full disk can surface anywhere a file is written (the store, a model folder, a
        # snapshot): one line naming what was being written, not a traceback
        full = disk_full(exc)
        if full is None:
            raise
        print(f"appliance {args.command}: {full}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
