"""A consistent copy of the store while it is in use, and a copy's model paths re-homed.

The copy is DuckDB's `COPY FROM DATABASE` into a new file, run on a cursor of its own (a
second connection to the same database instance). One statement is one transaction, so the
copy is the snapshot of one moment: every committed hole with all its samples, every label,
and the sequences as they stood with those rows. The store's lock is held only to open the
cursor, so the daemon keeps storing holes and answering while the copy runs (a checkpoint and
a byte copy of the file would hold every writer for as long as the copy takes). The copy is
also compact: DuckDB writes only live blocks, none of the file's free space.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb

from appliance.store.facade import Store

# rows counted into a backup's manifest: enough to see at a glance what it holds
COUNTED_TABLES = ("holes", "traces", "labels", "predictions", "models", "api_keys", "audit")


@dataclass(frozen=True)
class StoreCopy:
    schema_version: int
    counts: dict[str, int]
    models: tuple[str, ...]  # every registered version, in registration order
    active_model: str | None


def copy_database(store: Store, target: Path) -> StoreCopy:
    """Copy the whole store into a new DuckDB file at target (which must not exist)."""
    if target.exists():
        raise FileExistsError(f"{target} exists already")
    with store.cursor() as con:
        cur = con.cursor()
    alias = f"backup_{uuid.uuid4().hex[:12]}"
    try:
        row = cur.execute("SELECT current_database()").fetchone()
        source = _identifier(str(row[0])) if row else "main"
        cur.execute(f"ATTACH ? AS {alias}", [str(target)])
        try:
            cur.execute(f"COPY FROM DATABASE {source} TO {alias}")
            # read back from the copy, not the live store: what the copy holds
            return _describe(cur, alias)
        finally:
            cur.execute(f"DETACH {alias}")
    finally:
        cur.close()


def _describe(cur: duckdb.DuckDBPyConnection, alias: str) -> StoreCopy:
    counts = {}
    for table in COUNTED_TABLES:
        found = cur.execute(f"SELECT count(*) FROM {alias}.{table}").fetchone()
        counts[table] = int(found[0]) if found else 0
    version = cur.execute(f"SELECT max(version) FROM {alias}.schema_version").fetchone()
    models = [r[0] for r in cur.execute(
        f"SELECT version FROM {alias}.models ORDER BY created_at, version").fetchall()]
    active = cur.execute(
        f"SELECT version FROM {alias}.models WHERE status = 'active' "
        "ORDER BY created_at DESC LIMIT 1").fetchone()
    return StoreCopy(int(version[0]) if version and version[0] is not None else 0, counts,
                     tuple(models), active[0] if active else None)


def rehome_models(store: Store, models_root: Path) -> None:
    """Point every model row at its folder under models_root: rows hold absolute paths, and a
    restored store lives in another home (often on another box)."""
    with store.transaction() as con:
        versions = [r[0] for r in con.execute("SELECT version FROM models").fetchall()]
        for version in versions:
            con.execute("UPDATE models SET path = ? WHERE version = ?",
                        [str(models_root / version), version])


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
