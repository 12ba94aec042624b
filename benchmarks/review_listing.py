"""The review queue's listing speed (run by hand: python benchmarks/review_listing.py).

Builds a DuckDB store of N synthetic holes (default 1,200) on disk in a temp folder, most of
them estimated (some with a review priority, some without, some never estimated, a few
labelled), and times GET /holes?status=needs-review as the daemon serves it: through
appliance.services.holes.HoleService.list, first page and a later page, median of several
calls after a warm-up. For comparison it also times the listing as it was built before (a
view of every hole, sorted in Python by spread: there were no priorities) on the same store,
and checks both count the same holes. Target: well under 0.1 s at 1,200 holes.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from appliance.points import DepthEstimate, DepthPoints
from appliance.records import Estimate, Hole
from appliance.services.db import Db
from appliance.services.holes import HoleService
from appliance.services.metrics import Metrics
from appliance.store import Store
from appliance.synth import generate
from appliance.trace import Trace


def distinct_holes(n: int) -> list[tuple[Trace, DepthPoints]]:
    """n holes with distinct content (a few synthetic holes, each renamed and re-hashed),
    with their true points."""
    base = generate(min(n, 24), 5)
    out = []
    for i in range(n):
        hole = base[i % len(base)]
        meta = dataclasses.replace(hole.trace.meta, source=f"bench/hole_{i:05d}.xls",
                                   content_hash=f"{i:016x}" + "0" * 48)
        out.append((dataclasses.replace(hole.trace, meta=meta), hole.truth))
    return out


def estimate_for(i: int) -> DepthEstimate | None:
    """Every 10th hole never estimated, every 7th from before review priorities existed."""
    if i % 10 == 3:
        return None
    spread = 0.01 * ((i * 37) % 50)
    return DepthEstimate(
        2.0, 9.0, 18.0, spread_mm={"entry": spread, "transition": spread / 2, "exit": None},
        presence={"entry": 1.0, "transition": 0.9, "exit": 1.0},
        confidence={"entry": 0.5 + 0.01 * (i % 40), "transition": 0.8, "exit": None},
        model_version="bench", estimator="ensemble",
        review_priority=None if i % 7 == 0 else ((i * 53) % 997) / 997)


def build_store(home: Path, n: int) -> Store:
    store = Store.open(home)
    holes = distinct_holes(n)
    stored = store.add_holes([(trace, "bench") for trace, _ in holes])
    for i, (result, (_, truth)) in enumerate(zip(stored, holes, strict=True)):
        hole_id = result[0]  # type: ignore[index]
        est = estimate_for(i)
        if est is not None:
            store.add_prediction(hole_id, est)
        if i % 25 == 0:
            store.add_label(hole_id, truth, "bench", origin="operator")
    return store


def old_list(service: HoleService, db: Db, limit: int, offset: int
             ) -> tuple[list[Hole], int]:
    """The listing as it was: a view of every unlabelled hole, then a sort in Python (by
    spread, then confidence; there was no review priority)."""
    views = [service._view(r) for r in db.list_holes(False, None)]
    views.sort(key=lambda v: (-(v.uncertainty_mm if v.uncertainty_mm is not None
                                else float("inf")), _old_confidence(v.estimate)))
    return views[offset:offset + limit], len(views)


def _old_confidence(estimate: Estimate | None) -> float:
    values = [c for c in (estimate.confidence if estimate else {}).values() if c is not None]
    return float(min(values)) if values else 0.0


def timed(fn: Any, repeats: int) -> float:
    fn()  # warm-up: the service loads its estimate cache once
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--holes", type=int, default=1200)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        store = build_store(Path(tmp) / "home", args.holes)
        print(f"store of {args.holes} holes built in {time.perf_counter() - start:.1f} s")
        try:
            db = Db(store)
            service = HoleService(db, models=None, metrics=Metrics())  # type: ignore[arg-type]
            try:
                new_page, total = service.list("needs-review", None, 100, 0)
                assert total == old_list(service, db, 100, 0)[1]
                print(f"needs-review: {total} holes; first page of {len(new_page)}")
                for label, offset in (("first page", 0), ("page at offset 500", 500)):
                    old = timed(lambda o=offset: old_list(service, db, 100, o), args.repeats)
                    new = timed(lambda o=offset: service.list("needs-review", None, 100, o),
                                args.repeats)
                    print(f"{label:>20}: old {old * 1000:7.1f} ms   new {new * 1000:6.1f} ms"
                          f"   ({old / new:.0f}x)")
            finally:
                service.close()
        finally:
            store.close()


if __name__ == "__main__":
    main()
