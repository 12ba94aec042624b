"""Parity gate: onnxruntime reproduces torch's outputs on the probe inputs.

Raw outputs within max |diff| <= 1e-4 (fp32) and decoded points within 0.01 mm, presence
decisions identical. Points are decoded from onnxruntime's outputs with the feature code the
engine serves with, and compared to the trainer's decoded points_<i> when the probe has them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from appliance.engine.ensemble import Engine
from appliance.features import FeatureBatch, decode, points_array
from appliance.gates.probe import Probe
from appliance.gates.report import FAIL, PASS, GateResult

GATE = "parity"
MAX_ABS_DIFF = 1e-4
MAX_POINT_DIFF_MM = 0.01


def check_parity(
    engine: Engine,
    probe: Probe,
    max_abs_diff: float = MAX_ABS_DIFF,
    max_point_diff_mm: float = MAX_POINT_DIFF_MM,
) -> GateResult:
    b = len(probe.x)
    # Without recorded origins: the "fixed" rule puts grid position 0 at start_mm.
    origin = (np.asarray(probe.origin_mm, np.float64) if probe.origin_mm is not None
              else np.full(b, engine.spec.start_mm))
    batch = FeatureBatch(probe.x, probe.scalars, origin, tuple(f"probe[{i}]" for i in range(b)))
    outputs = engine.run(probe.x, probe.scalars)
    members: list[dict[str, Any]] = []
    problems: list[str] = []
    for i, out in enumerate(outputs):
        rel = engine.manifest.members[i]
        d_scores = _max_diff(out.scores, probe.scores[i])
        d_pres = _max_diff(out.presence, probe.presence[i])
        want_offset = probe.offset[i] if i < len(probe.offset) else None
        if (out.offset is None) != (want_offset is None):
            problems.append(f"{rel}: the member {'lacks' if out.offset is None else 'has'} "
                            "the offset output the probe "
                            f"{'records' if out.offset is None else 'does not record'}")
        elif out.offset is not None and want_offset is not None:
            d_pres = max(d_pres, _max_diff(out.offset, want_offset))
        ours = points_array(decode(out.scores, out.presence, batch, engine.spec))
        theirs = points_array(decode(probe.scores[i], probe.presence[i], batch, engine.spec))
        d_points = _point_diff(ours, theirs)
        if probe.points[i] is not None:
            d_points = max(d_points, _point_diff(ours, np.asarray(probe.points[i], np.float64)))
        members.append({"member": rel, "max_abs_diff_scores": d_scores,
                        "max_abs_diff_presence": d_pres, "max_point_diff_mm": d_points})
        worst = max(d_scores, d_pres)
        if not worst <= max_abs_diff:
            problems.append(f"{rel}: max |onnx - torch| = {worst:.3g} > {max_abs_diff:g}")
        if not d_points <= max_point_diff_mm:
            what = "presence differs" if np.isinf(d_points) else f"{d_points:.4f} mm"
            problems.append(f"{rel}: decoded points differ from torch's ({what}; "
                            f"limit {max_point_diff_mm} mm)")
    details = {"members": members, "limits": {"max_abs_diff": max_abs_diff,
                                              "max_point_diff_mm": max_point_diff_mm},
               "probe_holes": b}
    if problems:
        details["problems"] = problems
        return GateResult(GATE, FAIL, problems[0], details)
    worst = max(max(m["max_abs_diff_scores"], m["max_abs_diff_presence"]) for m in members)
    return GateResult(GATE, PASS, f"max |onnx - torch| = {worst:.2g} over {len(members)} "
                      f"member(s), {b} probe hole(s)", details)


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("inf")
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def _point_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b| in mm; inf when one places a point the other leaves absent."""
    if a.shape != b.shape or not np.array_equal(np.isnan(a), np.isnan(b)):
        return float("inf")
    both = ~np.isnan(a)
    return float(np.max(np.abs(a[both] - b[both]))) if both.any() else 0.0
