"""Traces -> model input arrays. Training and serving both call make_batch (one place)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from appliance.estimators.heuristic import Reading, estimate_heuristic
from appliance.estimators.reading import median, percentile, step_change_positions
from appliance.features.grid import Grid, check_trace, moving_mean
from appliance.features.spec import FeatureSpec
from appliance.points import POINT_NAMES, DepthPoints
from appliance.trace import Trace

MIN_TORQUE_SCALE_A = 0.5  # below this a hole is air or noise; do not blow noise up to 1.0
MIN_THRUST_SCALE_A = 0.5
EDGE_MM = 0.5
RULE_BUMP_MM = 0.25  # half-width of the triangle marking a rule-based point


@dataclass(frozen=True)
class FeatureBatch:
    x: np.ndarray  # float32 [B, C, L]
    scalars: np.ndarray  # float32 [B, S]
    origin_mm: np.ndarray  # float64 [B]: depth of grid position 0
    sources: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.x.shape[0])


def _speed_per_sample(trace: Trace) -> tuple[np.ndarray, bool]:
    """Spindle speed in krpm per sample, or (no-load current proxy, False)."""
    steps = {int(s.step): float(s.rpm) for s in trace.meta.program}
    if steps:
        present = np.unique(trace.step)
        if all(int(s) in steps for s in present):
            lut_keys = np.array(sorted(steps))
            lut_vals = np.array([abs(steps[k]) for k in lut_keys])
            pos = np.searchsorted(lut_keys, trace.step)
            return lut_vals[pos] / 1000.0, True
    if trace.rpm is not None and np.all(np.isfinite(trace.rpm)):
        return np.abs(trace.rpm) / 1000.0, True
    if trace.torque_empty_a is not None and np.all(np.isfinite(trace.torque_empty_a)):
        # No-load current rises with spindle speed: a proxy where rpm was not logged.
        return np.asarray(trace.torque_empty_a, dtype=np.float64), False
    return np.zeros(len(trace)), False


def hole_features(trace: Trace, spec: FeatureSpec, reading: Reading | None = None,
                  rules: DepthPoints | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """One hole: (x [C, L], scalars [S], origin_mm). `reading`, `rules`: the hole's
    read_trace and the rule-based estimator's points, when the caller has them."""
    check_trace(trace)
    origin = spec.start_mm
    grid = Grid(np.asarray(trace.depth_mm, dtype=np.float64), origin, spec.grid_mm, spec.length)
    valid = grid.valid
    torque = grid.resample(trace.torque_a)
    thrust = grid.resample(trace.thrust_a)
    t_scale = max(percentile(np.abs(torque[valid]), 99) if valid.any() else 0.0,
                  MIN_TORQUE_SCALE_A)
    f_scale = max(percentile(np.abs(thrust[valid]), 99) if valid.any() else 0.0,
                  MIN_THRUST_SCALE_A)
    width = max(1, int(round(spec.smooth_mm / spec.grid_mm)))
    smooth = moving_mean(torque, width)
    dtorque = np.gradient(smooth, spec.grid_mm) * valid
    # The first advancing sample of each new step, as the reading rules see it: a step
    # change where the tool backs off has its first samples dropped as re-travel, and the
    # marker must land on the first one kept (version 1 lost those changes).
    step = np.asarray(trace.step)
    changed = np.zeros(len(trace), dtype=bool)
    if spec.version >= 2:
        changed[np.flatnonzero(grid.keep)[step_change_positions(step, grid.keep)]] = True
    else:
        changed[1:] = step[1:] != step[:-1]
    speed_samples, speed_is_rpm = _speed_per_sample(trace)
    speed = grid.resample(speed_samples)
    x = np.stack([
        torque / t_scale,
        thrust / f_scale,
        dtorque / t_scale,
        grid.marks(changed),
        speed,
        valid.astype(np.float64),
    ])
    # Presence cues a pooled backbone can miss: torque where the hole starts and ends.
    edge = max(1, int(round(EDGE_MM / spec.grid_mm)))
    cells = np.flatnonzero(valid)
    start_t = median(torque[cells[:edge]]) / t_scale if len(cells) else 0.0
    end_t = median(torque[cells[-edge:]]) / t_scale if len(cells) else 0.0
    if spec.version >= 3:
        rule_x, rule_s = _rule_reading(trace, grid, reading, rules)
        x = np.concatenate([x, rule_x])
    meta = trace.meta
    counter = meta.head_local_counter
    scalars = np.array([
        math.log1p(max(counter, 0)) / 5.0 if counter is not None else 0.0,
        1.0 if counter is not None else 0.0,
        1.0 if meta.predrilled else 0.0,
        1.0 if meta.predrilled is not None else 0.0,
        math.log10(t_scale),
        math.log10(f_scale),
        1.0 if speed_is_rpm else 0.0,
        start_t,
        end_t,
    ])
    if spec.version >= 3:
        scalars = np.concatenate([scalars, rule_s])
    return x, scalars, origin


def _rule_reading(trace: Trace, grid: Grid, reading: Reading | None,
                  points: DepthPoints | None) -> tuple[np.ndarray, np.ndarray]:
    """The rule-based estimator's points: ([3, L] triangles, [3] present flags)."""
    if points is None:
        points = estimate_heuristic(trace, reading).points
    bumps = np.zeros((len(POINT_NAMES), grid.length))
    present = np.zeros(len(POINT_NAMES))
    half = RULE_BUMP_MM / grid.step_mm
    cells = np.arange(grid.length)
    for k, name in enumerate(POINT_NAMES):
        v = points.get(name)
        if v is None:
            continue
        present[k] = 1.0
        p = (v - grid.origin_mm) / grid.step_mm
        bumps[k] = np.clip(1.0 - np.abs(cells - p) / half, 0.0, None)
    return bumps, present


def make_batch(traces: list[Trace], spec: FeatureSpec,
               readings: list[Reading | None] | None = None,
               rules: list[DepthPoints] | None = None) -> FeatureBatch:
    """Features of several holes; `readings`, `rules`: their read_trace and rule-based
    points, when the caller has them."""
    if not traces:
        return FeatureBatch(np.zeros((0, spec.n_channels, spec.length), np.float32),
                            np.zeros((0, spec.n_scalars), np.float32), np.zeros(0), ())
    readings = readings or [None] * len(traces)
    rule_points: list[DepthPoints | None] = list(rules) if rules else [None] * len(traces)
    xs, ss, origins = zip(*(hole_features(t, spec, r, p)
                            for t, r, p in zip(traces, readings, rule_points, strict=True)),
                          strict=True)
    return FeatureBatch(
        x=np.stack(xs).astype(np.float32),
        scalars=np.stack(ss).astype(np.float32),
        origin_mm=np.asarray(origins, dtype=np.float64),
        sources=tuple(t.meta.source for t in traces),
    )
