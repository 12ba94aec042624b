"""Whole-ingest benchmark: every Setitec log of ../shared/data/setitec into a fresh store.

Run by hand: `python benchmarks/ingest.py [--data DIR] [--repeat N]`. Prints
- whole ingest (walk + parse + store; holes committed in groups of 32, each hole whole or
  absent): files/s, samples/s; the same without the parse-ahead thread and with one
  commit per hole;
- parse only (appliance.ingest.parse_file): median and p95 per file;
- store only (Store.add_hole of already parsed traces): median and p95 per hole, and
  Store.get_trace of each hole back;
and the ratios between them, all measured in the same run. Target: >= 150 files/s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from appliance.errors import IngestError
from appliance.ingest import parse_file
from appliance.services.intake import ingest_paths
from appliance.store import Store

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "setitec"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def whole_ingest(
    data: Path, prefetch: int = 8, batch: int = 32
) -> tuple[float, int, int, int, float]:
    """(wall s, files, samples, rejected, CPU s of this process: all its threads)."""
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        with Store.open(Path(tmp) / "home") as store:
            report = ingest_paths(store, [data], prefetch=prefetch, batch=batch)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    samples = sum(e["samples"] for e in report.ingested)
    return elapsed, report.n_files, samples, len(report.rejected), cpu


def parse_only(files: list[Path]) -> tuple[list[float], list]:
    times, traces = [], []
    for path in files:
        t0 = time.perf_counter()
        try:
            trace = parse_file(path)
        except IngestError:
            continue
        times.append(time.perf_counter() - t0)
        traces.append(trace)
    return times, traces


def store_only(traces: list) -> tuple[list[float], list[float]]:
    """Store.add_hole per trace (one transaction, so one commit and fsync, per hole), then
    Store.get_trace of each hole back."""
    times, reads = [], []
    with tempfile.TemporaryDirectory() as tmp, Store.open(Path(tmp) / "home") as store:
        ids = []
        for trace in traces:
            t0 = time.perf_counter()
            ids.append(store.add_hole(trace, "bench")[0])
            times.append(time.perf_counter() - t0)
        for hole_id in ids:
            t0 = time.perf_counter()
            store.get_trace(hole_id)
            reads.append(time.perf_counter() - t0)
    return times, reads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=3, help="whole-ingest runs (best kept)")
    args = parser.parse_args()
    files = sorted(p for p in args.data.rglob("*") if p.suffix.lower() == ".xls")
    if not files:
        raise SystemExit(f"no .xls files under {args.data}")

    parse_only(files[:5])  # warm imports and caches
    runs, serial_runs, per_hole_runs = [], [], []
    for _ in range(args.repeat):  # interleaved so all variants see the same machine load
        runs.append(whole_ingest(args.data))
        serial_runs.append(whole_ingest(args.data, prefetch=0))
        per_hole_runs.append(whole_ingest(args.data, batch=1))
    elapsed, n_files, n_samples, n_rejected, _ = min(runs)
    cpu = min(r[4] for r in runs)
    serial = min(serial_runs)[0]
    per_hole = min(per_hole_runs)[0]
    parse_times, traces = parse_only(files)
    store_times, read_times = store_only(traces)

    ms = 1000.0
    print(f"data: {args.data} ({len(files)} .xls files)")
    print(f"whole ingest (best of {args.repeat}): {n_files} files in {elapsed:.3f} s -> "
          f"{n_files / elapsed:.1f} files/s, {n_samples / elapsed:,.0f} samples/s "
          f"({n_rejected} rejected)   [target >= 150 files/s]")
    print(f"  all runs: {', '.join(f'{n_files / r[0]:.1f}' for r in runs)} files/s; "
          f"CPU {cpu:.3f} s -> {n_files / cpu:.1f} files per CPU-second "
          "(what an unloaded core would sustain, fsync waits aside)")
    print(f"without the parse-ahead thread: {n_files / serial:.1f} files/s "
          f"(parse-ahead speed-up x{serial / elapsed:.2f})")
    print(f"one commit per hole (batch=1): {n_files / per_hole:.1f} files/s "
          f"(grouped commits speed-up x{per_hole / elapsed:.2f})")
    print(f"parse only: median {statistics.median(parse_times) * ms:.2f} ms/file, "
          f"p95 {pct(parse_times, 0.95) * ms:.2f} ms/file, "
          f"{sum(len(t) for t in traces) / sum(parse_times):,.0f} samples/s")
    print(f"store only: median {statistics.median(store_times) * ms:.2f} ms/hole, "
          f"p95 {pct(store_times, 0.95) * ms:.2f} ms/hole; get_trace median "
          f"{statistics.median(read_times) * ms:.2f} ms, p95 {pct(read_times, 0.95) * ms:.2f} ms")
    per_file = elapsed / n_files
    print(f"ratios: whole ingest per file / parse median = "
          f"{per_file / statistics.median(parse_times):.2f}; "
          f"store median / parse median = "
          f"{statistics.median(store_times) / statistics.median(parse_times):.2f}")


if __name__ == "__main__":
    main()
