"""Drift detection on one drill's stream of holes (run by hand, not by pytest).

    python benchmarks/drift.py [--estimator model|heuristic] [--holes 1000] [--changes 8]
                               [--thresholds 4 6 8 10 12 16] [--seed 0] [--synthetic]

The stream: the logs in ../shared/data/setitec of the drill with the most logs (by the
traces' drill serial), in date order, cycled, every copy re-logged with a gain jitter of
+-2 % and sample noise. Without ../shared: the holes of a synthetic drill (a few jobs of
appliance.synth at one current scale, each hole with its own layer levels and noise).

Prints, for the default appliance.monitor.DriftConfig and then per threshold:
- detection delay (holes after the change, 1 = the first changed hole raised it) after every
  current (net and no-load) steps x1.5 and x0.7 at several points of the stream, and the
  same when only the net currents change (a new tool or material, not the sensor);
- false alarms over `--holes` unchanged holes after learning (an operator resets each alarm,
  and the drill learns again);
- how fast the monitor replays the stream's signals.
Targets: delay <= 15 holes, <= 1 false alarm over 1,000 holes.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from collections import defaultdict
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np

from appliance.estimators import Estimator, load_estimator
from appliance.estimators.heuristic import read_trace
from appliance.home import baseline_model_dir, repo_root
from appliance.ingest import parse_bytes
from appliance.monitor import DriftConfig, DriftMonitor, HoleSignals, drill_of, hole_signals
from appliance.synth import generate, synthesize
from appliance.trace import Trace

SHARED = repo_root().parent / "shared" / "data" / "setitec"
GAIN_JITTER = 0.02
TORQUE_NOISE_A = 0.03
THRUST_NOISE_A = 0.006
FACTORS = (1.5, 0.7)
WINDOW = 40  # holes watched after a change
START = datetime(2025, 1, 6, 6, 0)


def drill_logs() -> tuple[str, list[Trace]] | None:
    """The logs of the drill with the most distinct logs, in date order; None without
    ../shared."""
    manifest = SHARED / "MANIFEST.csv"
    if not manifest.is_file():
        return None
    by_drill: dict[str, dict[str, Trace]] = defaultdict(dict)
    with manifest.open(newline="") as f:
        for row in csv.DictReader(f):
            path = SHARED / row["path"]
            try:
                trace = parse_bytes(path.read_bytes(), path.name)
            except Exception:  # a malformed log is the ingest's business, not this one's
                continue
            by_drill[drill_of(trace)].setdefault(trace.meta.content_hash, trace)
    drill = max(sorted(by_drill), key=lambda d: len(by_drill[d]))
    logs = sorted(by_drill[drill].values(),
                  key=lambda t: (t.meta.cycle_date or "", t.meta.source))
    return drill, logs


def synthetic_logs(seed: int, n: int = 80, jobs: int = 3) -> tuple[str, list[Trace]]:
    """A synthetic drill: `jobs` stacks and programs of appliance.synth at one current
    scale; every hole its own layer levels (+-5 %), noise, tool wear and seed."""
    rng = np.random.default_rng(seed)
    templates = [h.spec for h in generate(jobs, seed)]
    gain = templates[0].current_gain
    out = []
    for i in range(n):
        t = templates[int(rng.integers(jobs))]
        layers = tuple(replace(layer, torque_a=layer.torque_a * float(np.exp(
            rng.normal(0.0, 0.05)))) for layer in t.layers)
        spec = replace(t, layers=layers, seed=int(rng.integers(2**31 - 1)),
                       local_counter=i % 40, current_gain=gain)
        out.append(synthesize(spec).trace)
    return "synthetic", out


def relog(trace: Trace, rng: np.random.Generator, index: int, factor: float = 1.0,
          no_load: bool = True) -> Trace:
    """A copy of a hole as the drill would log it again: gain jitter and sample noise, and
    every current x factor (the no-load currents too unless no_load is False)."""
    g = factor * float(rng.uniform(1.0 - GAIN_JITTER, 1.0 + GAIN_JITTER))
    n = len(trace)
    torque = trace.torque_a * g + TORQUE_NOISE_A * rng.standard_normal(n)
    thrust = trace.thrust_a * g + THRUST_NOISE_A * rng.standard_normal(n)
    ge = factor if no_load else 1.0
    empty_t = None if trace.torque_empty_a is None else trace.torque_empty_a * ge
    empty_f = None if trace.thrust_empty_a is None else trace.thrust_empty_a * ge
    meta = replace(trace.meta, source=f"{trace.meta.source}#{index}",
                   content_hash=f"{trace.meta.content_hash[:48]}{index:016x}")
    return replace(trace, meta=meta, torque_a=torque, thrust_a=thrust,
                   torque_empty_a=empty_t, thrust_empty_a=empty_f)


def stream_signals(logs: list[Trace], indices: range, seed: int, estimator: Estimator,
                   factor: float = 1.0, no_load: bool = True) -> list[HoleSignals]:
    """Signals of holes `indices` of the cycled stream; a hole's noise depends only on
    its index, so a changed stream differs from the unchanged one only by the factor."""
    traces = []
    for i in indices:
        rng = np.random.default_rng((seed, i))
        traces.append(relog(logs[i % len(logs)], rng, i, factor, no_load))
    estimates = estimator.estimate_many(traces)
    return [hole_signals(t, e, read_trace(t)) for t, e in zip(traces, estimates, strict=True)]


def replay(drill: str, signals: list[HoleSignals], config: DriftConfig,
           reset_on_alarm: bool = False) -> tuple[list[int], list[str]]:
    """Holes (1-based) at which alarms were raised, and the channels that raised each."""
    monitor = DriftMonitor(config)
    alarms: list[int] = []
    channels: list[str] = []
    for i, s in enumerate(signals):
        at = START + timedelta(minutes=10 * i)
        state = monitor.observe(drill, s, at)
        if state.alarm_at_hole is not None and (not alarms or alarms[-1] != state.alarm_at_hole):
            alarms.append(state.alarm_at_hole)
            channels.append("+".join(x.name for x in state.signals if x.state == "alarm"))
            if reset_on_alarm:
                monitor.reset(drill, at)
    return alarms, channels


def delays(drill: str, base: list[HoleSignals], changed: dict[int, list[HoleSignals]],
           config: DriftConfig) -> tuple[list[int | None], list[str], int]:
    """Per change point: holes until the alarm (None: not within WINDOW), the channels,
    and how many change points were preceded by a false alarm (not counted)."""
    out: list[int | None] = []
    names: list[str] = []
    spoiled = 0
    for c, after in changed.items():
        alarms, channels = replay(drill, base[:c] + after, config)
        if alarms and alarms[0] <= c:
            spoiled += 1
            continue
        out.append(alarms[0] - c if alarms else None)
        names.append(channels[0] if channels else "-")
    return out, names, spoiled


def fmt(ds: list[int | None]) -> str:
    if not ds:
        return "n/a"
    hit = [d for d in ds if d is not None]
    missed = len(ds) - len(hit)
    if not hit:
        return f"none in {WINDOW}"
    text = f"median {statistics.median(hit):g}, max {max(hit)}"
    return text + (f", {missed} missed" if missed else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--estimator", choices=("model", "heuristic"), default="model")
    ap.add_argument("--holes", type=int, default=1000, help="unchanged holes after learning")
    ap.add_argument("--changes", type=int, default=8, help="change points in the stream")
    ap.add_argument("--thresholds", type=float, nargs="+", default=[4, 6, 8, 10, 12, 16])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--synthetic", action="store_true",
                    help="a synthetic drill even where ../shared is there")
    args = ap.parse_args()

    found = None if args.synthetic else drill_logs()
    if found is None:
        if not args.synthetic:
            print(f"{SHARED} is missing: using a synthetic drill (appliance.synth) instead")
        found = synthetic_logs(args.seed)
    drill, logs = found
    dates = [t.meta.cycle_date or "?" for t in logs]
    print(f"drill {drill}: {len(logs)} distinct logs, {dates[0]} .. {dates[-1]}")
    spec = "heuristic" if args.estimator == "heuristic" else str(baseline_model_dir())
    estimator = load_estimator(spec)
    print(f"estimator: {estimator.name}")

    config = DriftConfig()
    n = config.learn_holes + args.holes
    t0 = time.perf_counter()
    base = stream_signals(logs, range(n), args.seed, estimator)
    # change points spread over the stream and over the phase of the cycle of logs (a
    # program seen once per cycle has no reference: a change while it runs waits for one)
    step = max(1, (args.holes - WINDOW) // args.changes)
    phase = max(1, len(logs) // args.changes)
    points = [config.learn_holes + 20 + k * step + (k * phase) % len(logs)
              for k in range(args.changes)]
    points = [c for c in points if c + WINDOW <= n]
    cases = [(f, nl) for nl in (True, False) for f in FACTORS]
    changed: dict[tuple[float, bool], dict[int, list[HoleSignals]]] = {}
    for f, nl in cases:
        changed[f, nl] = {c: stream_signals(logs, range(c, c + WINDOW), args.seed, estimator,
                                            f, nl) for c in points}
    print(f"{n} unchanged holes + {len(cases) * len(points) * WINDOW} changed ones read in "
          f"{time.perf_counter() - t0:.0f} s; changes after holes {points}")

    t0 = time.perf_counter()
    replay(drill, base, config)
    per_s = len(base) / (time.perf_counter() - t0)
    print(f"replay: {per_s:,.0f} holes/s through DriftMonitor.observe")

    print(f"\ndefault config: threshold {config.threshold:g}, slack {config.slack:g}, "
          f"learning {config.learn_holes} holes, clip {config.clip:g}")
    alarms, channels = replay(drill, base, config, reset_on_alarm=True)
    print(f"false alarms over {args.holes} unchanged holes: {len(alarms)}"
          + (f" (at holes {alarms}, channels {channels})" if alarms else ""))
    for f, nl in cases:
        ds, names, spoiled = delays(drill, base, changed[f, nl], config)
        what = "every current" if nl else "net currents"
        extra = f"; {spoiled} change points after a false alarm left out" if spoiled else ""
        print(f"{what} x{f:g}: delays {ds} ({fmt(ds)}), first channel "
              f"{sorted(set(names))}{extra}")

    print("\nper threshold (a change point after a false alarm is left out: 'late'):")
    print(f"{'threshold':>9} | {'false alarms':>12} | "
          + " | ".join(f"{('all' if nl else 'net') + f' x{f:g}':>26}" for f, nl in cases))
    for h in args.thresholds:
        cfg = replace(config, threshold=h)
        fa, _ = replay(drill, base, cfg, reset_on_alarm=True)
        cols = []
        for f, nl in cases:
            ds, _, spoiled = delays(drill, base, changed[f, nl], cfg)
            cols.append(fmt(ds) + (f" ({spoiled} late)" if spoiled else ""))
        print(f"{h:>9g} | {len(fa):>12} | " + " | ".join(f"{c:>26}" for c in cols))


if __name__ == "__main__":
    main()
