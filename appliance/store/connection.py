"""Opening the DuckDB file, and turning DuckDB's lock error into one clear line."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from appliance.errors import ApplianceError, NotFoundError, StoreLockedError

DB_FILENAME = "appliance.duckdb"


class StoreOpenError(ApplianceError):
    """The store file exists but cannot be opened (not a DuckDB file, unreadable, ...)."""


def db_path(home: Path) -> Path:
    return Path(home) / DB_FILENAME


def connect(path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection to path; StoreLockedError when another process holds the file."""
    if read_only and not path.exists():
        raise NotFoundError(f"no appliance store at {path} (run `appliance ingest` first)")
    try:
        con = duckdb.connect(str(path), read_only=read_only)
        if not read_only:
            # A checkpoint runs inside the commit that crosses this much WAL and holds every
            # writer meanwhile (~0.25 s). A hole is ~17 KB of WAL (its samples one block,
            # codec.py), so 64 MB is ~3,700 holes: once every ~75 s at the bus's 50 holes/s
            # (benchmarks/store_writes.py). 16 MB measured no better for the bus's latency.
            con.execute("SET checkpoint_threshold = '64MB'")
        return con
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise StoreLockedError(locked_message(path, str(exc))) from None
        raise StoreOpenError(f"cannot open the store {path}: {_first_line(exc)}") from None
    except (duckdb.Error, OSError) as exc:
        raise StoreOpenError(f"cannot open the store {path}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def locked_message(path: Path, duckdb_message: str) -> str:
    pid = re.search(r"PID (\d+)", duckdb_message)
    holder = f"process {pid.group(1)}" if pid else "another process"
    return (
        f"the store {path} is locked by {holder}; `appliance serve` may be running: "
        "stop it, or do this through the daemon's API (TUI or HTTP) instead"
    )
