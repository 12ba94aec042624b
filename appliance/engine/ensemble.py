"""The ONNX ensemble: model folder -> onnxruntime sessions -> DepthEstimate per hole.

How members are combined (documented for operators and the API):
- presence of a point = mean over members of sigmoid(presence logit); the point is reported
  when that mean is >= 0.5, otherwise it is None;
- the point's depth = median over the members that themselves place the point (their own
  presence >= 0.5; all members if none does) of each member's decoded depth;
- spread_mm = max - min of those members' depths (the full range: with 3-5 members an IQR
  says little, and the range is what an operator can check by eye);
- confidence = mean presence x share of those members within 0.5 mm of the median;
- then, for models whose manifest sets decode.place_on_ramps (every model trained since
  feature version 3), each reported point is moved onto the half-height crossing of the
  torque ramp it sits on (appliance.estimators.snap: the model picks the ramp, the
  convention of depth-points.md places the point), when such a ramp is within 0.5 mm.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from appliance.engine.fallback import heuristic_estimate
from appliance.engine.manifest import ModelFolderError, ModelManifest, read_manifest, read_verified
from appliance.engine.sessions import make_session, run_member
from appliance.estimators.heuristic import Reading, read_trace
from appliance.estimators.snap import snap
from appliance.features import FeatureBatch, FeatureSpec, make_batch, refine_positions
from appliance.points import POINT_NAMES, DepthEstimate
from appliance.trace import Trace

log = logging.getLogger(__name__)

BATCH_SIZE = 32
AGREE_MM = 0.5


class ModelRunError(RuntimeError):
    """The ensemble could not produce a usable answer for an input (the engine falls back)."""


@dataclass(frozen=True)
class MemberOutputs:
    scores: np.ndarray  # [B, 3, L]
    presence: np.ndarray  # [B, 3] logits


class Engine:
    """A loaded ensemble. Immutable after construction, so many threads may share one."""

    def __init__(
        self,
        manifest: ModelManifest,
        spec: FeatureSpec,
        sessions: Sequence[ort.InferenceSession],
        load_s: float = 0.0,
    ) -> None:
        self.manifest = manifest
        self.spec = spec
        self.sessions = tuple(sessions)
        self.load_s = load_s

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def n_members(self) -> int:
        return len(self.sessions)

    @classmethod
    def from_dir(
        cls, model_dir: str | Path, *, threads: int | None = None, warm: bool = True
    ) -> Engine:
        """Load every member (bytes checked against the manifest hash) and optionally warm up.

        Raises ModelFolderError naming the file when the folder is incomplete, a member is
        altered, or onnxruntime cannot load it.
        """
        t0 = time.perf_counter()
        manifest = read_manifest(model_dir)
        try:
            spec = FeatureSpec.from_dict(manifest.feature_spec)
        except Exception as exc:
            raise ModelFolderError(
                f"{manifest.folder}/manifest.json: feature_spec is not usable ({exc})"
            ) from exc
        sessions = []
        for rel in manifest.members:
            data = read_verified(manifest, rel)
            try:
                sessions.append(make_session(data, threads))
            except Exception as exc:  # onnxruntime raises several unrelated types
                raise ModelFolderError(
                    f"{manifest.folder / rel}: onnxruntime cannot load it ({exc})"
                ) from exc
        engine = cls(manifest, spec, sessions)
        if warm:
            engine.warm()
        engine.load_s = time.perf_counter() - t0
        return engine

    def warm(self) -> None:
        """One forward pass per member so the first real request does not pay allocation."""
        x = np.zeros((1, len(self.spec.channels), self.spec.length), dtype=np.float32)
        s = np.zeros((1, len(self.spec.scalars)), dtype=np.float32)
        try:
            self.run(x, s)
        except Exception as exc:
            raise ModelFolderError(
                f"{self.manifest.folder}: members fail on an input of the feature spec's shape"
                f" [1, {x.shape[1]}, {x.shape[2]}] ({exc})"
            ) from exc

    def run(self, x: np.ndarray, scalars: np.ndarray) -> list[MemberOutputs]:
        """Raw outputs of every member on one batch of features."""
        return [MemberOutputs(*run_member(s, x, scalars)) for s in self.sessions]

    def predict(self, traces: Sequence[Trace]) -> list[DepthEstimate | ModelRunError]:
        """The ensemble's estimate per hole, or the error that kept it from answering that hole.

        A failure of the whole batch (features or a member raising) raises ModelRunError.
        """
        if not traces:
            return []
        try:
            # The rules' reading of each hole, once: features (v3) and placement both use it.
            readings = ([read_trace(t) for t in traces]
                        if self.spec.version >= 3 or self.manifest.place_on_ramps else None)
            batch = make_batch(list(traces), self.spec, readings)
            outputs = self.run(batch.x, batch.scalars)
        except Exception as exc:
            raise ModelRunError(f"model {self.version} failed: {exc}") from exc
        n = len(traces)
        finite = np.ones(n, dtype=bool)
        for out in outputs:
            finite &= np.isfinite(out.scores).reshape(n, -1).all(axis=1)
            finite &= np.isfinite(out.presence).reshape(n, -1).all(axis=1)
        try:
            depths = self._member_depths(outputs, batch)  # [M, B, 3]
        except Exception as exc:
            raise ModelRunError(f"model {self.version} failed to decode: {exc}") from exc
        probs = np.stack([_sigmoid(o.presence) for o in outputs])  # [M, B, 3]
        results: list[DepthEstimate | ModelRunError] = []
        for b in range(n):
            if not finite[b]:
                results.append(ModelRunError(f"model {self.version} gave non-finite outputs"))
                continue
            est = self._combine(depths[:, b, :], probs[:, b, :])
            results.append(place_on_ramps(est, traces[b], readings[b])
                           if readings is not None and self.manifest.place_on_ramps else est)
        return results

    def estimate(self, trace: Trace) -> DepthEstimate:
        return self.estimate_many([trace])[0]

    def estimate_many(
        self, traces: Sequence[Trace], batch_size: int = BATCH_SIZE
    ) -> list[DepthEstimate]:
        """Ensemble estimates; a hole the model cannot answer gets the heuristic's, with a note."""
        out: list[DepthEstimate] = []
        for i in range(0, len(traces), batch_size):
            chunk = list(traces[i : i + batch_size])
            try:
                answers = self.predict(chunk)
            except ModelRunError as exc:
                # One bad hole must not cost its batch-mates the model: retry them one by one.
                answers = [exc] if len(chunk) == 1 else [self._predict_one(t) for t in chunk]
            for trace, ans in zip(chunk, answers, strict=True):
                if isinstance(ans, ModelRunError):
                    log.warning("%s: %s; heuristic used", trace.meta.source, ans)
                    out.append(heuristic_estimate(trace, f"{ans}; rule-based fallback"))
                else:
                    out.append(ans)
        return out

    def _predict_one(self, trace: Trace) -> DepthEstimate | ModelRunError:
        try:
            return self.predict([trace])[0]
        except ModelRunError as exc:
            return exc

    def _member_depths(self, outputs: Sequence[MemberOutputs], batch: FeatureBatch
                       ) -> np.ndarray:
        want = (len(batch), 3, self.spec.length)
        for out in outputs:
            if out.scores.shape != want or out.presence.shape != want[:2]:
                raise ValueError(f"decode: scores {out.scores.shape} / presence "
                                 f"{out.presence.shape} do not match batch of {want[0]} holes"
                                 f" x 3 points x {want[2]} positions")
        return member_depths(np.stack([o.scores for o in outputs]), batch, self.spec)

    def _combine(self, depths: np.ndarray, probs: np.ndarray) -> DepthEstimate:
        return combine_members(depths, probs, self.version)


def member_depths(scores: np.ndarray, batch: FeatureBatch, spec: FeatureSpec) -> np.ndarray:
    """[M, B, 3] depth each member locates per point, whether or not it deems it present:
    decode's raw_mm for every member in one vectorised pass (the per-hole records decode
    builds cost more than the arithmetic on a served batch). scores: [M, B, 3, L]."""
    pos, _ = refine_positions(scores)
    return batch.origin_mm[None, :, None] + pos * spec.grid_mm


def combine_members(depths: np.ndarray, probs: np.ndarray, version: str | None = None
                    ) -> DepthEstimate:
    """The ensemble rule of this module's docstring for one hole; depths, probs: [members, 3].

    Training's held-out metrics call this too, so they measure what serving will answer."""
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
        voters = probs[:, k] >= 0.5
        d = depths[voters, k] if voters.any() else depths[:, k]
        d = d[np.isfinite(d)]
        if d.size == 0:
            values[name] = spread[name] = confidence[name] = None
            continue
        med = float(np.median(d))
        values[name] = med
        spread[name] = float(d.max() - d.min())
        confidence[name] = p_mean * float(np.mean(np.abs(d - med) <= AGREE_MM))
    return DepthEstimate(
        entry_mm=values["entry"],
        transition_mm=values["transition"],
        exit_mm=values["exit"],
        spread_mm=spread,
        presence=presence,
        confidence=confidence,
        model_version=version,
        estimator="ensemble",
    )


def place_on_ramps(est: DepthEstimate, trace: Trace, reading: Reading | None = None
                   ) -> DepthEstimate:
    """The estimate with its points on their ramps' half-height crossings (see snap)."""
    moved = snap(trace, {n: est.points.get(n) for n in POINT_NAMES}, reading)
    return replace(est, entry_mm=moved["entry"], transition_mm=moved["transition"],
                   exit_mm=moved["exit"])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z.astype(np.float64), -60, 60)))

