"""Samples as schemas 1-5 stored them, a row each: the v6 conversion's input in tests and the
old layout benchmarks/store_writes.py compares the blocks with."""

from __future__ import annotations

import duckdb

from appliance.store import holes, schema
from appliance.store.codec import SAMPLE_COLUMNS, samples_table

# the table as the v1 migration created it (v6 drops it)
SAMPLES_TABLE = next(step for step in schema.MIGRATIONS[0]
                     if isinstance(step, str) and "CREATE TABLE samples" in step)


def insert_sample_rows(con: duckdb.DuckDBPyConnection, batch: list[holes.NewHole]) -> None:
    """The holes' samples as rows of `samples` (NULL: no such array), as insert_samples wrote
    them before v6."""
    for new in batch:
        columns = {name: getattr(new.trace, name) for name, _ in SAMPLE_COLUMNS[1:]}
        rows = samples_table(new.trace.n_samples, columns)  # noqa: F841 - scanned below
        con.execute(f"INSERT INTO samples (hole_id, hole_seq, {', '.join(rows.column_names)}) "
                    "SELECT ?, ?, * FROM rows", [new.hole_id, new.hole_seq])
