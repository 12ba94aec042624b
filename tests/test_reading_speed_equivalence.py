"""The vectorised reading primitives give exactly what the straightforward ones give.

ramp_edges_many (every peak at once, from moving maxima) against run_edge on each peak's own
`low` mask, reading.median and reading.percentile against np.median and np.percentile,
reading.gradient against np.gradient: the rule-based estimator, the synthetic truth and the
model features all read through the fast ones, so any difference would move points and
truth alike.
"""

from __future__ import annotations

import numpy as np
import pytest

from appliance.estimators.reading import (
    EDGE_SCAN,
    build_profile,
    detection_slope,
    gradient,
    median,
    percentile,
    ramp_edges_many,
    run_edge,
)
from appliance.synth import generate


def reference_edges(slope: np.ndarray, peak: int, share: float, gap: int) -> tuple[int, int]:
    """ramp_edges as it was written first: one `low` mask and two run_edge walks per peak."""
    sign = 1.0 if slope[peak] >= 0 else -1.0
    low = sign * slope < share * abs(float(slope[peak]))
    return run_edge(low, peak, gap, -1), run_edge(low, peak, gap, +1)


def assert_same_edges(slope: np.ndarray, peaks: np.ndarray, share: float, gap: int) -> None:
    starts, ends = ramp_edges_many(slope, peaks, share, gap)
    for pk, s, e in zip(peaks.tolist(), starts.tolist(), ends.tolist(), strict=True):
        assert (s, e) == reference_edges(slope, pk, share, gap), (pk, share, gap)


@pytest.fixture(scope="module")
def slopes() -> list[np.ndarray]:
    out = []
    for h in generate(40, 20_260_611):
        prof = build_profile(h.trace.depth_mm, h.trace.torque_a, h.trace.step)
        if prof is not None:
            out.append(detection_slope(prof))
    return out


@pytest.mark.parametrize(("share", "gap"), [(0.2, 10), (0.5, 1), (0.2, 0), (0.05, 37)])
def test_edges_match_reference_on_synthetic_holes(slopes: list[np.ndarray], share: float,
                                                  gap: int) -> None:
    rng = np.random.default_rng(7)
    for slope in slopes:
        mag = np.abs(slope)
        peaks = np.flatnonzero((mag[1:-1] >= mag[:-2]) & (mag[1:-1] > mag[2:])) + 1
        # also points that are no peak (their own slope may be below the share) and the ends
        extra = rng.integers(0, len(slope), 20)
        assert_same_edges(slope, np.concatenate((peaks, extra, [0, len(slope) - 1])),
                          share, gap)


def test_edges_match_reference_on_ramps_longer_than_one_look() -> None:
    rng = np.random.default_rng(11)
    for n in (3, 50, 5 * EDGE_SCAN, 20 * EDGE_SCAN):
        # a slow swell with noise: stretches above the share far longer than EDGE_SCAN
        slope = np.sin(np.linspace(0, 3 * np.pi, n)) + 0.3 * rng.standard_normal(n)
        slope[rng.integers(0, n, max(1, n // 50))] = 0.0  # exact zeros: the sign rule
        assert_same_edges(slope, np.arange(n) if n <= 50 else rng.integers(0, n, 60),
                          0.2, 10)


def test_median_is_np_median() -> None:
    rng = np.random.default_rng(3)
    for n in range(1, 60):
        for values in (rng.standard_normal(n), rng.integers(0, 4, n).astype(float)):
            assert median(values) == float(np.median(values))
    assert np.isnan(median(np.zeros(0)))


def test_median_of_float32_is_np_median() -> None:
    # the members' residual maps are float32: their median is taken in float32 as numpy does
    rng = np.random.default_rng(4)
    for n in range(1, 12):
        values = rng.standard_normal(n).astype(np.float32)
        assert median(values) == float(np.median(values))


def test_percentile_is_np_percentile() -> None:
    rng = np.random.default_rng(6)
    for n in [*range(1, 80), 1827, 5000]:
        for values in (np.abs(rng.standard_normal(n)) * 3.0, rng.integers(0, 4, n) * 0.1):
            for q in (0, 1, 50, 90, 99, 100):
                assert percentile(values, q) == float(np.percentile(values, q)), (n, q)


def test_gradient_is_np_gradient() -> None:
    rng = np.random.default_rng(5)
    for n in (2, 3, 4, 257):
        values = np.cumsum(rng.standard_normal(n))
        assert np.array_equal(gradient(values, 0.01), np.gradient(values, 0.01))
