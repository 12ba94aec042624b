"""The ONNX ensemble: model folder -> onnxruntime sessions -> DepthEstimate per hole.

How the members' outputs become the answer (presence and depth per point, placement on the
ramps, the learnt residual, the review priority) is appliance/engine/answer.py, which
training's held-out figures call too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from appliance.engine.answer import Decoding, answer_hole, combine_members, hole_outputs
from appliance.engine.fallback import heuristic_estimate
from appliance.engine.manifest import ModelFolderError, ModelManifest, read_manifest, read_verified
from appliance.engine.review import DEFAULT, ReviewCalibration
from appliance.engine.sessions import make_session, run_member
from appliance.estimators.heuristic import estimate_heuristic, read_trace
from appliance.features import FeatureBatch, FeatureSpec, make_batch
from appliance.points import DepthEstimate
from appliance.trace import Trace

__all__ = ["Engine", "ModelRunError", "combine_members", "decoding_of"]

log = logging.getLogger(__name__)

BATCH_SIZE = 32


class ModelRunError(RuntimeError):
    """The ensemble could not produce a usable answer for an input (the engine falls back)."""


@dataclass(frozen=True)
class MemberOutputs:
    scores: np.ndarray  # [B, 3, L]
    presence: np.ndarray  # [B, 3] logits
    offset: np.ndarray | None = None  # [B, 3, L] mm, models with learnt placement


def decoding_of(manifest: ModelManifest) -> Decoding:
    """How a folder's outputs are decoded; a review calibration that does not parse is a
    damaged folder, not a reason to serve without priorities."""
    review = DEFAULT
    if manifest.review is not None:
        try:
            review = ReviewCalibration.from_dict(manifest.review)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFolderError(f"{manifest.folder}/manifest.json: 'review' is not a "
                                   f"usable calibration ({exc})") from exc
    return Decoding(place_on_ramps=manifest.place_on_ramps, residual=manifest.residual,
                    review=review)


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
        self.decoding = decoding_of(manifest)

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
            # The rules' reading of each hole, once: features (v3), placement and the review
            # priority all use it.
            readings = [read_trace(t) for t in traces]
            rules = [estimate_heuristic(t, r).points for t, r in zip(traces, readings,
                                                                      strict=True)]
            batch = make_batch(list(traces), self.spec, readings, rules)
            outputs = self.run(batch.x, batch.scalars)
        except Exception as exc:
            raise ModelRunError(f"model {self.version} failed: {exc}") from exc
        n = len(traces)
        finite = np.ones(n, dtype=bool)
        for out in outputs:
            for arr in (out.scores, out.presence, out.offset):
                if arr is not None:
                    finite &= np.isfinite(arr).reshape(n, -1).all(axis=1)
        try:
            self._check_shapes(outputs, batch)
            present = [o.offset for o in outputs if o.offset is not None]
            offsets = np.stack(present) if len(present) == len(outputs) else None
            holes = hole_outputs(np.stack([o.scores for o in outputs]),
                                 np.stack([o.presence for o in outputs]), offsets,
                                 batch.origin_mm, self.spec.grid_mm)
        except Exception as exc:
            raise ModelRunError(f"model {self.version} failed to decode: {exc}") from exc
        results: list[DepthEstimate | ModelRunError] = []
        for b in range(n):
            if not finite[b]:
                results.append(ModelRunError(f"model {self.version} gave non-finite outputs"))
                continue
            results.append(answer_hole(holes[b], readings[b], rules[b], self.decoding,
                                       self.version))
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
                    # the model could not answer this hole: an operator should look first
                    out.append(replace(heuristic_estimate(trace, f"{ans}; rule-based fallback"),
                                       review_priority=1.0))
                else:
                    out.append(ans)
        return out

    def _predict_one(self, trace: Trace) -> DepthEstimate | ModelRunError:
        try:
            return self.predict([trace])[0]
        except ModelRunError as exc:
            return exc

    def _check_shapes(self, outputs: Sequence[MemberOutputs], batch: FeatureBatch) -> None:
        want = (len(batch), 3, self.spec.length)
        for out in outputs:
            if (out.scores.shape != want or out.presence.shape != want[:2]
                    or (out.offset is not None and out.offset.shape != want)):
                raise ValueError(f"decode: scores {out.scores.shape} / presence "
                                 f"{out.presence.shape} do not match batch of {want[0]} holes"
                                 f" x 3 points x {want[2]} positions")
