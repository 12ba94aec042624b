"""One hole's samples onto a uniform depth grid, advancing samples only."""

from __future__ import annotations

import numpy as np

from appliance.errors import ValidationError
from appliance.trace import Trace, advancing_mask


def check_trace(trace: Trace) -> None:
    source = trace.meta.source
    if len(trace) < 2:
        raise ValidationError(f"{source}: a hole needs at least 2 samples, it has {len(trace)}")
    for name in ("depth_mm", "torque_a", "thrust_a"):
        if not np.all(np.isfinite(getattr(trace, name))):
            raise ValidationError(f"{source}: Trace.{name} has non-finite values")


class Grid:
    """Binning of the advancing samples of one hole onto cells origin + i * step, i < length.

    Each occupied cell holds the mean of its samples placed at their mean depth; values
    are then interpolated onto the cell centres. Averaging matters at slow feeds (many
    samples per cell), interpolation at fast ones (cells between samples).
    """

    def __init__(self, depth_mm: np.ndarray, origin_mm: float, step_mm: float,
                 length: int) -> None:
        self.keep = advancing_mask(depth_mm)
        d = depth_mm[self.keep]
        self.origin_mm = origin_mm
        self.step_mm = step_mm
        self.length = length
        self.centres = origin_mm + step_mm * np.arange(length)
        idx = np.rint((d - origin_mm) / step_mm).astype(np.int64)
        inside = (idx >= 0) & (idx < length)
        self._idx = idx[inside]
        self._inside = inside
        self._counts = np.bincount(self._idx, minlength=length)
        self.occupied = self._counts > 0
        self._mean_depth = self._cell_mean_raw(d[inside])
        if self.occupied.any():
            first, last = np.flatnonzero(self.occupied)[[0, -1]]
            self.valid = np.zeros(length, dtype=bool)
            self.valid[first:last + 1] = True
        else:
            self.valid = np.zeros(length, dtype=bool)

    def _cell_mean_raw(self, v: np.ndarray) -> np.ndarray:
        sums = np.bincount(self._idx, weights=v, minlength=self.length)
        return sums[self.occupied] / self._counts[self.occupied]

    def resample(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """A per-sample array (full trace length) on the grid; `fill` outside the hole."""
        v = np.asarray(values, dtype=np.float64)[self.keep][self._inside]
        out = np.full(self.length, fill, dtype=np.float64)
        if not self.occupied.any():
            return out
        means = self._cell_mean_raw(v)
        out[self.valid] = np.interp(self.centres[self.valid], self._mean_depth, means)
        return out

    def marks(self, per_sample_flags: np.ndarray) -> np.ndarray:
        """1.0 on cells holding at least one flagged advancing sample."""
        f = np.asarray(per_sample_flags, dtype=bool)[self.keep][self._inside]
        out = np.zeros(self.length, dtype=np.float64)
        out[self._idx[f]] = 1.0
        return out


def moving_mean(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving mean with edge values repeated (no shrink at the ends)."""
    if width <= 1:
        return x.copy()
    pad_l = width // 2
    pad_r = width - 1 - pad_l
    xp = np.concatenate([np.full(pad_l, x[0]), x, np.full(pad_r, x[-1])])
    c = np.cumsum(np.concatenate([[0.0], xp]))
    mean: np.ndarray = (c[width:] - c[:-width]) / width
    return mean
