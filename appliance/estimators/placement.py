"""Where a rig's labels sit relative to the convention: each label's anchor and residual.

The model learns two things per point: which ramp (its score peaks on that ramp's
half-height crossing, the *anchor*) and how far from that crossing the rig's operators put
the point (the *residual*, 0 for the convention of ../shared/docs/depth-points.md). This
module splits a set of labels into the two. The ramp a label belongs to is not always the
nearest one: a rig that confirms every exit 0.8 mm deeper may have its labels nearer to a
later tail than to the exit's own crossing. So the rig's typical offset per point is
estimated first (the median over its holes of label minus nearest crossing), and each label
is then anchored on the crossing that offset explains best.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from appliance.estimators.heuristic import Reading
from appliance.estimators.snap import crossings
from appliance.points import POINT_NAMES, DepthPoints

REACH_MM = 2.5  # farthest a label may sit from its anchor crossing (practice, not a new ramp)
MIN_HOLES_FOR_OFFSET = 3  # fewer labels of a point than this: no rig offset is estimated


@dataclass(frozen=True)
class Anchored:
    """Per hole and point ([N, 3], POINT_NAMES order; NaN where the label has no point)."""

    anchor_mm: np.ndarray  # the crossing the label belongs to (the label itself off any ramp)
    residual_mm: np.ndarray  # label - anchor
    on_ramp: np.ndarray  # bool: the anchor is a crossing, not the label itself
    rig_offset_mm: dict[str, float]  # per point: the median of label - nearest crossing

    def summary(self, n: int | None = None) -> dict[str, dict[str, float | int | None]]:
        """The learnt placement per point as the model card states it, over the first n
        holes (the rig's own, before augmented copies and replayed holes)."""
        out: dict[str, dict[str, float | int | None]] = {}
        residual, on_ramp, anchor = self.residual_mm[:n], self.on_ramp[:n], self.anchor_mm[:n]
        for k, name in enumerate(POINT_NAMES):
            r = residual[on_ramp[:, k], k]
            out[name] = {
                "median_residual_mm": round(float(np.median(r)), 4) if len(r) else None,
                "p10_mm": round(float(np.percentile(r, 10)), 4) if len(r) else None,
                "p90_mm": round(float(np.percentile(r, 90)), 4) if len(r) else None,
                "n_on_ramp": int(len(r)),
                "n_labels": int(np.isfinite(anchor[:, k]).sum()),
            }
        return out


def anchor_labels(labels: Sequence[DepthPoints], readings: Sequence[Reading | None],
                  learn: bool = True) -> Anchored:
    """Anchor and residual of every label. `learn` False: the labels follow the convention
    by definition (the baseline's synthetic truth and checked labels), so each label is its
    own anchor with residual 0, whatever the noisy trace's crossing says."""
    n = len(labels)
    values = np.array([[np.nan if lab.get(p) is None else float(lab.get(p))  # type: ignore[arg-type]
                        for p in POINT_NAMES] for lab in labels], dtype=np.float64).reshape(n, 3)
    if not learn:
        return Anchored(values.copy(), np.where(np.isfinite(values), 0.0, np.nan),
                        np.zeros((n, 3), dtype=bool), {p: 0.0 for p in POINT_NAMES})
    cands = [[np.asarray(crossings(r, p)) if r is not None else np.zeros(0)
              for p in POINT_NAMES] for r in readings]
    anchor = values.copy()
    on_ramp = np.zeros((n, 3), dtype=bool)
    offsets: dict[str, float] = {}
    for k, name in enumerate(POINT_NAMES):
        nearest = [_nearest_delta(values[i, k], cands[i][k]) for i in range(n)]
        deltas = [d for d in nearest if d is not None]
        offset = float(np.median(deltas)) if len(deltas) >= MIN_HOLES_FOR_OFFSET else 0.0
        offsets[name] = round(offset, 4)
        for i in range(n):
            v, c = values[i, k], cands[i][k]
            if not np.isfinite(v) or len(c) == 0:
                continue
            best = c[int(np.argmin(np.abs(v - offset - c)))]
            if abs(v - best) <= REACH_MM:
                anchor[i, k], on_ramp[i, k] = best, True
    return Anchored(anchor, values - anchor, on_ramp, offsets)


def _nearest_delta(v: float, cands: np.ndarray) -> float | None:
    if not np.isfinite(v) or len(cands) == 0:
        return None
    d = v - cands
    best = float(d[int(np.argmin(np.abs(d)))])
    return best if abs(best) <= REACH_MM else None


def placement_table(placement: dict[str, Any] | None) -> str:
    """The learnt placement of a model folder's manifest ("placement") as a markdown table:
    per point, how far the training labels sit from the convention's crossing and how far
    the model's held-out answers do. A folder from before learnt placement: one line."""
    if not placement:
        return "Placement: on the convention's half-height crossings (no learnt residual)."
    if placement.get("mode") == "convention":
        return ("Placement mode `convention`: trained with every residual target 0, so points "
                "are placed on the half-height crossings of depth-points.md; a fine-tune "
                "with `--placement learn` (the default of `appliance train`) learns a rig's "
                "own.")
    labels, model = placement.get("labels") or {}, placement.get("model") or {}
    rows = [f"Placement mode `{placement.get('mode')}` (learn: the labels' practice is learnt "
            "as residuals from the crossings; convention: every residual is 0).", "",
            "| point | labels: median residual mm (p10..p90) | labels on a ramp | "
            "model: median residual mm (n) |", "|---|---|---|---|"]
    for name in POINT_NAMES:
        lab, mod = labels.get(name) or {}, model.get(name) or {}
        rows.append(f"| {name} | {_mm(lab.get('median_residual_mm'))} "
                    f"({_mm(lab.get('p10_mm'))}..{_mm(lab.get('p90_mm'))}) | "
                    f"{lab.get('n_on_ramp', 0)} of {lab.get('n_labels', 0)} | "
                    f"{_mm(mod.get('median_residual_mm'))} ({mod.get('n', 0)}) |")
    return "\n".join(rows)


def _mm(v: object) -> str:
    return "-" if v is None else f"{float(v):+.3f}"  # type: ignore[arg-type]
