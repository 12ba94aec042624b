"""From the members' raw outputs on one hole to the DepthEstimate served: the one place
serving (engine.ensemble) and training's held-out figures (train.run, train.train) answer.

1. combine_members: presence and depth per point from the members (the ensemble rule);
2. placement: each reported point moves onto the half-height crossing of the ramp it sits
   on (decode.place_on_ramps), then by the residual the members learnt for that point at
   that crossing (decode.residual: the rig's own practice; 0 for the convention);
3. review priority: the calibrated chance that the answer is wrong (engine.review).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from appliance.engine.review import DEFAULT, PointEvidence, ReviewCalibration, features
from appliance.estimators.heuristic import Reading
from appliance.estimators.reading import median
from appliance.estimators.snap import ramp_spans, snap_points
from appliance.features.decode import refine_positions, sigmoid
from appliance.points import POINT_NAMES, DepthEstimate, DepthPoints

AGREE_MM = 0.5


@dataclass(frozen=True)
class Decoding:
    """How a model folder's outputs are turned into points (its manifest's "decode" and
    "review"); folders from before a step was introduced are served as they were gated."""

    place_on_ramps: bool = False
    residual: bool = False
    review: ReviewCalibration = field(default_factory=lambda: DEFAULT)


@dataclass(frozen=True)
class HoleOutputs:
    """The members' outputs for one hole."""

    depths: np.ndarray  # [M, 3] depth each member locates, present or not
    probs: np.ndarray  # [M, 3] presence probability
    mass: np.ndarray  # [M, 3] score mass in the located peak
    offsets: np.ndarray | None  # [M, 3, L] placement residual per position (mm), or None
    origin_mm: float
    grid_mm: float
    # whose agreement the review's spreads read: None, these members (as served); out of
    # fold one member answers and the whole ensemble stands in (train.heldout)
    peers: HoleOutputs | None = None


def combine_members(depths: np.ndarray, probs: np.ndarray, version: str | None = None
                    ) -> DepthEstimate:
    """The ensemble rule for one hole; depths, probs: [members, 3].

    - presence = mean over members of their probability; reported when >= 0.5;
    - depth = median over the members that themselves place the point (all if none does);
    - spread_mm = max - min of those members' depths;
    - confidence = mean presence x share of those members within 0.5 mm of the median."""
    values: dict[str, float | None] = {}
    spread: dict[str, float | None] = {}
    presence: dict[str, float] = {}
    confidence: dict[str, float | None] = {}
    for k, name in enumerate(POINT_NAMES):
        p_mean = float(probs[:, k].mean())
        presence[name] = p_mean
        if p_mean < 0.5:
            values[name] = spread[name] = confidence[name] = None
            continue
        d = _voting_depths(depths, probs, k)
        if d.size == 0:
            values[name] = spread[name] = confidence[name] = None
            continue
        med = median(d)
        values[name] = med
        spread[name] = float(d.max() - d.min())
        confidence[name] = p_mean * float(np.mean(np.abs(d - med) <= AGREE_MM))
    return DepthEstimate(
        entry_mm=values["entry"], transition_mm=values["transition"], exit_mm=values["exit"],
        spread_mm=spread, presence=presence, confidence=confidence, model_version=version,
        estimator="ensemble")


def answer_hole(out: HoleOutputs, reading: Reading | None, rules: DepthPoints | None,
                decoding: Decoding, version: str | None = None) -> DepthEstimate:
    """The served estimate of one hole (see the module docstring)."""
    return answer_with_features(out, reading, rules, decoding, version)[0]


def answer_with_features(out: HoleOutputs, reading: Reading | None, rules: DepthPoints | None,
                         decoding: Decoding, version: str | None = None,
                         ) -> tuple[DepthEstimate, np.ndarray]:
    """answer_hole, and the review features its priority was computed from (training fits
    the calibration on those)."""
    est = combine_members(out.depths, out.probs, version)
    located = {n: est.points.get(n) for n in POINT_NAMES}
    snapped, on_ramp = snap_points(reading, located)
    placed = snapped if decoding.place_on_ramps else located
    if decoding.residual and out.offsets is not None:
        placed = {n: _plus_residual(out, k, placed[n]) for k, n in enumerate(POINT_NAMES)}
    points, order_note = DepthPoints(*(placed[n] for n in POINT_NAMES)).in_order()
    out_of_order = order_note is not None
    peers = out.peers if out.peers is not None else out
    spread, majority = _spreads(peers.depths, peers.probs)
    evidence = PointEvidence(
        presence=np.array([est.presence[n] for n in POINT_NAMES]),
        mass=np.array([float(out.mass[_voters(out.probs, k), k].mean()) for k in range(3)]),
        spread_mm=spread, majority_spread_mm=majority,
        on_ramp=np.array([on_ramp[n] for n in POINT_NAMES]))
    # the rules and the rival ramps are compared with the crossing the point was anchored
    # on, not with the rig's residual on top of it
    anchors = DepthPoints(*((snapped if decoding.place_on_ramps else located)[n]
                            if points.get(n) is not None else None for n in POINT_NAMES))
    rivals = ({n: ramp_spans(reading, n) for n in POINT_NAMES if anchors.get(n) is not None}
              if reading is not None else {})
    f = features(evidence, anchors, rules, rivals, out_of_order,
                 reading.noise if reading is not None else None,
                 reading.per_no_load if reading is not None else None)
    priority = decoding.review.priority(f)
    note = order_note if out_of_order else est.note
    return replace(est, entry_mm=points.entry_mm, transition_mm=points.transition_mm,
                   exit_mm=points.exit_mm, review_priority=round(priority, 4), note=note), f


def _voters(probs: np.ndarray, k: int) -> np.ndarray:
    """Members that place point k themselves (all of them when none does)."""
    voters = probs[:, k] >= 0.5
    return voters if voters.any() else np.ones(len(probs), dtype=bool)


def _voting_depths(depths: np.ndarray, probs: np.ndarray, k: int) -> np.ndarray:
    """The finite depths of point k from the members that vote on it."""
    d: np.ndarray = depths[_voters(probs, k), k]
    finite: np.ndarray = d[np.isfinite(d)]
    return finite


def _spreads(depths: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per point the voting members' range (combine_members' spread_mm) and the range
    without the member furthest from their median (three or more voters); 0 for a point
    the members do not report."""
    spread, majority = np.zeros(len(POINT_NAMES)), np.zeros(len(POINT_NAMES))
    for k in range(len(POINT_NAMES)):
        d = _voting_depths(depths, probs, k)
        if float(probs[:, k].mean()) < 0.5 or d.size == 0:
            continue
        spread[k] = float(d.max() - d.min())
        if d.size >= 3:
            d = np.delete(d, int(np.argmax(np.abs(d - median(d)))))
        majority[k] = float(d.max() - d.min())
    return spread, majority


def _plus_residual(out: HoleOutputs, k: int, at_mm: float | None) -> float | None:
    """The point moved by the voting members' median residual read at its crossing."""
    if at_mm is None or out.offsets is None:
        return at_mm
    length = out.offsets.shape[-1]
    pos = float(np.clip((at_mm - out.origin_mm) / out.grid_mm, 0.0, length - 1))
    lo = int(np.floor(pos))
    hi = min(lo + 1, length - 1)
    frac = pos - lo
    maps = out.offsets[_voters(out.probs, k), k]
    r = median((1.0 - frac) * maps[:, lo] + frac * maps[:, hi])
    return round(at_mm + r, 4)


def hole_outputs(scores: np.ndarray, logits: np.ndarray, offsets: np.ndarray | None,
                 origin_mm: np.ndarray, grid_mm: float) -> list[HoleOutputs]:
    """Per hole, from the members' stacked outputs: scores [M, B, 3, L], presence logits
    [M, B, 3], offsets [M, B, 3, L] or None; origin_mm [B]. One vectorised decode of every
    member's located depth (per-hole records cost more than the arithmetic)."""
    pos, mass = refine_positions(scores)
    depths = np.asarray(origin_mm)[None, :, None] + pos * grid_mm  # [M, B, 3]
    probs = sigmoid(logits)
    return [HoleOutputs(depths[:, b], probs[:, b], mass[:, b],
                        None if offsets is None else offsets[:, b],
                        float(origin_mm[b]), grid_mm)
            for b in range(depths.shape[1])]

