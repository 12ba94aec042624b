"""Options and output helpers shared by the command modules."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

import msgspec


def add_home(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home",
        default=None,
        help="appliance home directory (default: $APPLIANCE_HOME or ./appliance-home)",
    )


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def cli_actor(name: str | None = None) -> str:
    """Who a verb's changes are audited as: `cli:<login name>` (or `cli:<name>` when given),
    as the API audits a change under its key's name, so the log tells both doors apart."""
    if not name:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):  # no login name for this uid (some containers)
            name = "unknown"
    return f"cli:{name}"


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=_jsonable)
    sys.stdout.write("\n")


def _jsonable(value: Any) -> Any:
    """A record (appliance.records) as its JSON fields; anything else as its text."""
    return msgspec.to_builtins(value) if isinstance(value, msgspec.Struct) else str(value)


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A plain aligned text table: readable over SSH, greppable, no dependency."""
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return printable(str(value))


def printable(text: str) -> str:
    """Text from the store for a terminal: control characters shown escaped, never sent. A
    file name or a label's `by` could otherwise carry escape sequences that rewrite the
    operator's screen."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
