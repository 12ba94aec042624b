"""Activation and estimate latency during hot swaps (run by hand: python benchmarks/activation.py).

- activation: load + warm + swap + persist of a 5-member model, median of several (target
  <= 2 s);
- estimate latency, one client thread estimating one hole at a time: p50/p99 in steady state,
  then while another thread swaps versions repeatedly (a pause between swaps, and back to
  back); the ratio of the p99s (target <= 1.5x) is what matters, all measured in this run.

The model is models/baseline when it holds a 5-member ensemble (or --model DIR), else a
5-member fixture model built like the tests' (tiny: then the figures show the machinery's
cost, not the network's). Traces are real Setitec logs from ../shared when present.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from model_fixtures import build_model_folder, ramp_trace, rewrite_manifest  # noqa: E402

from appliance.config import GateConfig  # noqa: E402
from appliance.home import baseline_model_dir  # noqa: E402
from appliance.registry import ServingService  # noqa: E402


def pick_model(arg: str | None, work: Path) -> tuple[Path, str]:
    if arg:
        return Path(arg), "given"
    base = baseline_model_dir()
    manifest = base / "manifest.json"
    if manifest.is_file() and len(json.loads(manifest.read_text())["members"]) >= 5:
        return base, "shipped baseline"
    return build_model_folder(work, "fixture", n_members=5), "5-member fixture (tiny convs)"


def renamed_copy(folder: Path, version: str, work: Path) -> Path:
    """The same model under another version name (the manifest is not in `files`)."""
    dest = work / version
    shutil.copytree(folder, dest)
    for p in [dest, *dest.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["version"] = version
    rewrite_manifest(dest, manifest)
    return dest


def load_traces(n: int) -> list:
    shared = REPO.parent / "shared" / "data" / "setitec"
    if (shared / "MANIFEST.csv").is_file():
        from appliance.errors import IngestError
        from appliance.ingest import parse_file

        traces = []
        for path in sorted(shared.rglob("*.xls")):
            try:
                traces.append(parse_file(path))
            except IngestError:
                continue
            if len(traces) >= n:
                return traces
        if traces:
            return traces
    return [ramp_trace(entry_mm=3 + i * 0.5, exit_mm=15 + i, seed=i) for i in range(n)]


def latencies(service: ServingService, traces: list, seconds: float) -> list[float]:
    out: list[float] = []
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        service.estimate(traces[i % len(traces)])
        out.append(time.perf_counter() - t0)
        i += 1
    return out


def during_swaps(service: ServingService, traces: list, seconds: float,
                 pause: float) -> tuple[list[float], int]:
    """Latencies while another thread alternates the two versions, `pause` s between swaps."""
    stop = threading.Event()
    swaps = [0]

    def swapper() -> None:
        while not stop.is_set():
            other = "bench-b" if service.active_version == "bench-a" else "bench-a"
            service.rollback(other, "bench")
            swaps[0] += 1
            stop.wait(pause)

    th = threading.Thread(target=swapper)
    th.start()
    try:
        return latencies(service, traces, seconds), swaps[0]
    finally:
        stop.set()
        th.join()


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=None)
    ap.add_argument("--seconds", type=float, default=8.0, help="per phase, all windows")
    ap.add_argument("--activations", type=int, default=6)
    ap.add_argument("--cycles", type=int, default=4)
    ap.add_argument("--pauses", type=float, nargs="+", default=[2.0, 0.0],
                    help="seconds between swaps in the swapping phases (0: back to back)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-activation-"))
    try:
        model, what = pick_model(args.model, work)
        a = renamed_copy(model, "bench-a", work)
        b = renamed_copy(model, "bench-b", work)
        service = ServingService.open(work / "home", GateConfig(min_exam=0), baseline_dir=a)
        service.register(b)
        traces = load_traces(8)
        print(f"model: {what} ({len(json.loads((a / 'manifest.json').read_text())['members'])} "
              f"members); traces: {len(traces)} ({traces[0].meta.variant})")

        times, loads = [], []
        for k in range(args.activations):
            t0 = time.perf_counter()
            done = service.activate("bench-b", "bench", force=True, reason="benchmark") \
                if k % 2 == 0 else service.rollback("bench-a", "bench")
            times.append(time.perf_counter() - t0)
            loads.append(done["load_s"])
        print(f"activation (load+warm+swap+persist): median {statistics.median(times):.3f} s, "
              f"max {max(times):.3f} s; load+warm alone median {statistics.median(loads):.3f} s"
              f"  [target <= 2 s]")

        latencies(service, traces, 1.0)  # warm
        for pause in args.pauses:
            # Steady and swapping windows alternate, so that the load other processes put on
            # a shared machine drifts over both alike; the ratio is taken within this loop.
            steady: list[float] = []
            swapping: list[float] = []
            swaps = 0
            for _ in range(args.cycles):
                steady += latencies(service, traces, args.seconds / args.cycles)
                got, n = during_swaps(service, traces, args.seconds / args.cycles, pause)
                swapping += got
                swaps += n
            s99, w99 = pct(steady, 99), pct(swapping, 99)
            print(f"swap every {pause:.1f} s after the last ({swaps} swaps, {args.cycles} "
                  f"alternating windows):")
            print(f"  estimate steady:   n={len(steady)} p50 {pct(steady, 50):.2f} ms  "
                  f"p99 {s99:.2f} ms")
            print(f"  estimate swapping: n={len(swapping)} p50 {pct(swapping, 50):.2f} ms  "
                  f"p99 {w99:.2f} ms")
            print(f"  p99 ratio swapping/steady {w99 / s99:.2f}x  [target <= 1.5x]")
        service.close()
    finally:
        for p in [work, *work.rglob("*")]:
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
