"""Parse-time measurement shared by benchmarks/ingest_parse.py and benchmarks/ingest.py.

Files are read into memory first so that only parsing is timed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.ingest import parse_bytes
from appliance.trace import Trace

ROWS_UNIT = 2000  # the task's reference file size


@dataclass
class ParseTimings:
    sources: list[str]
    rows: list[int]
    seconds: list[float]  # median over the repeats, per file
    errors: dict[str, str]

    def summary(self) -> dict[str, float]:
        secs = np.asarray(self.seconds)
        rows = np.asarray(self.rows, dtype=np.float64)
        if secs.size == 0:
            return {"files": 0.0}
        per_unit = secs / np.maximum(rows, 1) * ROWS_UNIT
        return {
            "files": float(secs.size),
            "rows": float(rows.sum()),
            "median_ms_per_file": float(np.median(secs) * 1e3),
            "p95_ms_per_file": float(np.percentile(secs, 95) * 1e3),
            "median_ms_per_2000_rows": float(np.median(per_unit) * 1e3),
            "p95_ms_per_2000_rows": float(np.percentile(per_unit, 95) * 1e3),
            "samples_per_s": float(rows.sum() / secs.sum()),
        }


def time_parse(paths: list[Path], repeats: int = 5,
               parse: Callable[[bytes, str], Trace] = parse_bytes) -> ParseTimings:
    """Median parse time of each file over `repeats` runs (after one warm-up run)."""
    out = ParseTimings([], [], [], {})
    for path in paths:
        data = Path(path).read_bytes()
        try:
            trace = parse(data, str(path))
        except Exception as exc:  # the benchmark reports rejects instead of stopping
            out.errors[str(path)] = str(exc)
            continue
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            parse(data, str(path))
            runs.append(time.perf_counter() - start)
        out.sources.append(str(path))
        out.rows.append(len(trace))
        out.seconds.append(float(np.median(runs)))
    return out
