"""Parse-only benchmark over every Setitec log of ../shared/data/setitec (run by hand).

    python benchmarks/ingest_parse.py [--repeats 5]

Prints median and p95 parse time per file and per ~2,000 rows, samples/s, and the ratio
to a naive row-by-row float() parse of the same files measured in the same run.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from appliance.errors import IngestError
from appliance.ingest.setitec import parse_setitec
from appliance.ingest.timing import time_parse
from appliance.trace import Trace, TraceMeta

SETITEC_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "setitec"


def naive_parse(data: bytes, source: str) -> Trace:
    """The baseline: split lines, float() every cell (what the parser avoids)."""
    lines = data.decode("latin-1").split("\n")
    sep = ";" if lines[0].count(";") > lines[0].count("\t") else "\t"
    start = next(i for i, line in enumerate(lines) if "*** Datas" in line) + 2
    rows = [[float(c.replace(",", ".")) for c in line.rstrip(sep).split(sep)]
            for line in lines[start:] if line.strip()]
    arr = np.asarray(rows)
    return Trace(TraceMeta(source, "", "naive"), -arr[:, 0], arr[:, 1], arr[:, 2],
                 arr[:, 5].astype(np.int32), arr[:, 6].astype(np.int64))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not (SETITEC_DIR / "MANIFEST.csv").is_file():
        print(f"{SETITEC_DIR} is absent", file=sys.stderr)
        return 1
    with (SETITEC_DIR / "MANIFEST.csv").open(newline="") as f:
        paths = [SETITEC_DIR / row["path"] for row in csv.DictReader(f)]

    timings = time_parse(paths, args.repeats, parse_setitec)
    naive = time_parse(paths, args.repeats, naive_parse)
    figures = timings.summary()
    print(f"files parsed {len(timings.sources)}, rejected {len(timings.errors)}")
    for source, error in timings.errors.items():
        print(f"  rejected {source}: {error}")
    for key, value in figures.items():
        print(f"{key:>26}: {value:,.3f}")
    near = [s for s, n in zip(timings.seconds, timings.rows, strict=True) if 1500 <= n <= 2500]
    if near:
        print(f"{'median ms, 1500-2500 rows':>26}: {np.median(near) * 1e3:.3f} "
              f"({len(near)} files)")
    ours = dict(zip(timings.sources, timings.seconds, strict=True))
    ratio = np.median([t / ours[s] for s, t in zip(naive.sources, naive.seconds, strict=True)
                       if s in ours])
    print(f"{'naive float() / parser':>26}: {ratio:.2f}x (median per-file ratio, same run)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except IngestError as exc:
        print(exc, file=sys.stderr)
        sys.exit(1)
