"""Downsampling a trace for plotting without losing its peaks and dips.

A plot of 10,000 samples on a 200-column terminal needs ~2,000 points, but a plain stride
would skip the one-sample torque dips at a step change and shave the peaks operators look at.
Each bucket keeps the samples where torque and thrust reach their minimum and maximum, plus the
first and last sample and every step change, in their original order.
"""

from __future__ import annotations

import numpy as np

PER_BUCKET = 4  # min and max of torque and of thrust


def minmax_indices(
    max_points: int,
    torque: np.ndarray,
    thrust: np.ndarray | None = None,
    step: np.ndarray | None = None,
) -> np.ndarray:
    """Sorted sample indices, at most `max_points` of them (all samples when they fit)."""
    n = len(torque)
    if max_points < 2:
        raise ValueError("max_points must be at least 2")
    if n <= max_points:
        return np.arange(n)
    channels = [np.asarray(torque, dtype=np.float64)]
    if thrust is not None:
        channels.append(np.asarray(thrust, dtype=np.float64))
    changes = np.empty(0, dtype=np.int64)
    if step is not None:
        changes = np.flatnonzero(np.diff(np.asarray(step)) != 0) + 1
        # step changes are few; when they are not, they must not crowd out the extremes
        if len(changes) > max_points // 4:
            changes = changes[:: int(np.ceil(len(changes) / (max_points // 4)))]
    budget = max_points - 2 - len(changes)
    n_buckets = max(1, budget // (2 * len(channels)))
    edges = np.linspace(0, n, n_buckets + 1).astype(np.int64)
    keep = [np.array([0, n - 1]), changes]
    for values in channels:
        clean = np.where(np.isfinite(values), values, np.nan)
        lo = np.minimum.reduceat(np.nan_to_num(clean, nan=np.inf), edges[:-1])
        hi = np.maximum.reduceat(np.nan_to_num(clean, nan=-np.inf), edges[:-1])
        bucket = np.repeat(np.arange(n_buckets), np.diff(edges))
        at_lo = np.nan_to_num(clean, nan=np.inf) == lo[bucket]
        at_hi = np.nan_to_num(clean, nan=-np.inf) == hi[bucket]
        keep.append(_first_per_bucket(at_lo, bucket, n_buckets))
        keep.append(_first_per_bucket(at_hi, bucket, n_buckets))
    idx = np.unique(np.concatenate(keep))
    if len(idx) > max_points:  # only when rounding above overshoots: thin evenly
        idx = idx[np.linspace(0, len(idx) - 1, max_points).round().astype(np.int64)]
        idx = np.unique(idx)
    return idx


def _first_per_bucket(mask: np.ndarray, bucket: np.ndarray, n_buckets: int) -> np.ndarray:
    hits = np.flatnonzero(mask)
    b = bucket[hits]
    first = np.ones(len(hits), dtype=bool)
    first[1:] = b[1:] != b[:-1]
    out = hits[first]
    return out[: n_buckets]
