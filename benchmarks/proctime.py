"""CPU time of a daemon under benchmark: its own and its worker processes' (Linux /proc)."""

from __future__ import annotations

import os
from pathlib import Path


def own_seconds(pid: int) -> float | None:
    """User + system CPU time so far of this one process (not its children)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return out


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time so far of the process and its children still running (the
    estimate workers); None where /proc cannot tell. A child that exited in between takes
    its time with it: compare figures taken while the same workers run."""
    if pid is None:
        return None
    own = own_seconds(pid)
    if own is None:
        return None
    return own + sum(t for c in children(pid) if (t := own_seconds(c)) is not None)
