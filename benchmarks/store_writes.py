"""How a hole's samples are written: one block a hole (schema v6) against a row a sample (<= v5).

Run by hand: `python benchmarks/store_writes.py [--holes N] [--data DIR]`. Real logs of
../shared/data/setitec (synthetic holes when it is absent) are written one hole per commit,
as the MQTT bus writes them, each copy made distinct (a small offset on its currents) so that
DuckDB cannot share their bytes:
- "blocks": the store as it is (Store.add_hole into a fresh home);
- "rows": the same store with the samples written as schemas 1-5 wrote them, a row each
  (from the same Arrow columns, codec.samples_table), all else alike.
For each: WAL bytes a hole, commit p50 / p99 / max with DuckDB's own checkpoints (64 MB, as
the store sets it), and how many commits checkpointed and what they took. Ratios are of
figures measured in this run.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from sample_rows import SAMPLES_TABLE, insert_sample_rows  # noqa: E402

from appliance.errors import IngestError  # noqa: E402
from appliance.ingest import parse_file  # noqa: E402
from appliance.store import Store, holes  # noqa: E402
from appliance.store.connection import db_path  # noqa: E402
from appliance.synth import generate  # noqa: E402
from appliance.trace import Trace  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "setitec"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def source_traces(data: Path, pattern: str, limit: int = 40) -> list[Trace]:
    traces: list[Trace] = []
    if data.is_dir():
        for path in sorted(data.glob(pattern)):
            if len(traces) >= limit:
                break
            if path.is_file() and path.suffix.lower() in (".xls", ".txt", ".csv"):
                try:
                    traces.append(parse_file(path))
                except IngestError:
                    continue
    return traces or [h.trace for h in generate(limit, seed=7)]


def distinct(trace: Trace, i: int) -> Trace:
    """Copy i: currents offset by i mA, a content hash of its own."""
    meta = dataclasses.replace(trace.meta, content_hash=f"{i:016x}" * 4,
                               source=f"copy-{i}-{trace.meta.source}")
    return dataclasses.replace(trace, meta=meta, torque_a=np.round(trace.torque_a + i * 1e-3, 3),
                               thrust_a=np.round(trace.thrust_a + i * 1e-3, 3))


def wal_bytes(db: Path) -> int:
    wal = db.with_name(db.name + ".wal")
    return wal.stat().st_size if wal.exists() else 0


def run(layout: str, traces: list[Trace], n: int, home: Path) -> dict[str, float]:
    """Holes written by the store itself; for "rows" its samples go to the old table."""
    store = Store.open(home)
    original = holes.insert_samples
    if layout == "rows":
        with store.transaction() as con:
            con.execute(SAMPLES_TABLE)
        holes.insert_samples = insert_sample_rows
    db = db_path(home)
    try:
        commits, stalls, grown = [], [], []
        for i in range(n):
            wal = wal_bytes(db)
            t0 = time.perf_counter()
            store.add_hole(distinct(traces[i % len(traces)], i))
            commits.append((time.perf_counter() - t0) * 1000)
            if wal_bytes(db) < wal:  # this commit checkpointed
                stalls.append(commits[-1])
            else:
                grown.append(wal_bytes(db) - wal)
    finally:
        holes.insert_samples = original
        store.close()
    return {"wal_kb": statistics.mean(grown) / 1e3, "p50": statistics.median(commits),
            "p99": pct(commits, 0.99), "max": max(commits), "checkpoints": len(stalls),
            "stall": statistics.mean(stalls) if stalls else float("nan")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--holes", type=int, default=5000, help="holes written one per commit")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--pattern", default="tuhh-*/*", help="which logs under --data")
    args = p.parse_args()
    traces = source_traces(args.data, args.pattern)
    print(f"{len(traces)} source holes, median {statistics.median(t.n_samples for t in traces):.0f}"
          f" samples; {args.holes} holes written one per commit")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for layout in ("rows", "blocks"):
            rows[layout] = run(layout, traces, args.holes, Path(tmp) / layout)
    print(f"\n{'layout':8s} {'WAL KB/hole':>12s} {'commit p50 ms':>14s} {'p99':>7s} {'max':>7s} "
          f"{'checkpoints':>12s} {'mean ms':>8s}")
    for layout, r in rows.items():
        print(f"{layout:8s} {r['wal_kb']:12.1f} {r['p50']:14.2f} {r['p99']:7.1f} {r['max']:7.1f} "
              f"{r['checkpoints']:12d} {r['stall']:8.1f}")
    b, r = rows["blocks"], rows["rows"]
    print(f"\nblocks / rows: WAL {b['wal_kb'] / r['wal_kb']:.2f}, commit p99 "
          f"{b['p99'] / r['p99']:.2f}, worst commit {b['max'] / r['max']:.2f}")


if __name__ == "__main__":
    main()
