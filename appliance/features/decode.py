"""Model outputs -> depths in mm; and depths -> fractional grid positions (training targets)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from appliance.features.batch import FeatureBatch
from appliance.features.spec import FeatureSpec
from appliance.points import POINT_NAMES, DepthPoints

REFINE_HALF_WIDTH = 4  # cells either side of the peak used for the sub-grid centre of mass
PRESENCE_THRESHOLD = 0.5


@dataclass(frozen=True)
class DecodedPoints:
    points: DepthPoints  # None where presence < 0.5
    presence: dict[str, float]  # probability per point name
    raw_mm: dict[str, float]  # the located depth whether or not the point is deemed present
    peak_mass: dict[str, float]  # softmax mass in the refinement window: sharpness, 0..1


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logits -> probabilities, clipped so that no logit overflows exp."""
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(z, dtype=np.float64), -60, 60)))


def refine_positions(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sub-grid peak position and window mass of softmax(scores) along the last axis.

    The centre of mass of the probabilities within +-REFINE_HALF_WIDTH cells of the
    argmax: with soft targets spread over neighbouring cells it recovers fractions of a cell.
    """
    s = np.asarray(scores, dtype=np.float64)
    s = s - s.max(axis=-1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=-1, keepdims=True)
    n = s.shape[-1]
    peak = np.argmax(p, axis=-1)
    offsets = np.arange(-REFINE_HALF_WIDTH, REFINE_HALF_WIDTH + 1)
    idx = peak[..., None] + offsets
    inside = (idx >= 0) & (idx < n)
    w = np.take_along_axis(p, np.clip(idx, 0, n - 1), axis=-1) * inside
    mass = w.sum(axis=-1)
    pos = (w * idx).sum(axis=-1) / np.maximum(mass, 1e-12)
    return pos, mass


def decode(scores: np.ndarray, presence_logits: np.ndarray, batch: FeatureBatch,
           spec: FeatureSpec) -> list[DecodedPoints]:
    scores = np.asarray(scores)
    presence_logits = np.asarray(presence_logits)
    b = len(batch)
    if scores.shape != (b, 3, spec.length) or presence_logits.shape != (b, 3):
        raise ValueError(f"decode: scores {scores.shape} / presence {presence_logits.shape} do "
                         f"not match batch of {b} holes x 3 points x {spec.length} positions")
    pos, mass = refine_positions(scores)
    mm = batch.origin_mm[:, None] + pos * spec.grid_mm
    prob = sigmoid(presence_logits)
    out = []
    for i in range(b):
        present = prob[i] >= PRESENCE_THRESHOLD
        vals = [round(float(mm[i, k]), 4) if present[k] else None for k in range(3)]
        out.append(DecodedPoints(
            points=DepthPoints(*vals),
            presence={n: float(prob[i, k]) for k, n in enumerate(POINT_NAMES)},
            raw_mm={n: float(mm[i, k]) for k, n in enumerate(POINT_NAMES)},
            peak_mass={n: float(mass[i, k]) for k, n in enumerate(POINT_NAMES)},
        ))
    return out


def points_array(decoded: list[DecodedPoints]) -> np.ndarray:
    """[B, 3] depths in mm, NaN where absent (the probe's points_<i> layout)."""
    return np.array([[np.nan if d.points.get(n) is None else d.points.get(n)
                      for n in POINT_NAMES] for d in decoded], dtype=np.float64)


def target_positions(labels: list[DepthPoints], batch: FeatureBatch,
                     spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fractional grid positions [B, 3], presence [B, 3] and 'position usable' [B, 3].

    A present point outside the grid keeps presence 1 but cannot train the position.
    """
    b = len(labels)
    pos = np.zeros((b, 3), dtype=np.float64)
    present = np.zeros((b, 3), dtype=np.float64)
    usable = np.zeros((b, 3), dtype=np.float64)
    for i, lab in enumerate(labels):
        for k, n in enumerate(POINT_NAMES):
            v = lab.get(n)
            if v is None:
                continue
            present[i, k] = 1.0
            p = (v - batch.origin_mm[i]) / spec.grid_mm
            if 0.0 <= p <= spec.length - 1:
                pos[i, k] = p
                usable[i, k] = 1.0
    return pos, present, usable
