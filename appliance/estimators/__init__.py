"""Estimators: anything that turns a Trace into a DepthEstimate.

Public interface:
- Estimator: the protocol (`name`, `estimate(trace)`, `estimate_many(traces)`).
- load_estimator(spec): "heuristic" -> the rule-based estimator; a model folder -> the
  ONNX ensemble of appliance.engine.
- estimate_heuristic(trace) in appliance.estimators.heuristic.
- snap(trace, points) in appliance.estimators.snap: points moved onto their ramps'
  half-height crossings (how the ensemble's answers are placed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from appliance.errors import ValidationError
from appliance.points import DepthEstimate
from appliance.trace import Trace

if TYPE_CHECKING:
    from appliance.engine import Engine


@runtime_checkable
class Estimator(Protocol):
    name: str

    def estimate(self, trace: Trace) -> DepthEstimate: ...

    def estimate_many(self, traces: Sequence[Trace]) -> list[DepthEstimate]: ...


class ModelEstimator:
    """An ONNX model folder, served by appliance.engine.Engine."""

    def __init__(self, engine: Engine, folder: Path) -> None:
        self.engine = engine
        self.name = f"model:{engine.version or folder.name}"

    def estimate(self, trace: Trace) -> DepthEstimate:
        return self.engine.estimate(trace)

    def estimate_many(self, traces: Sequence[Trace]) -> list[DepthEstimate]:
        return self.engine.estimate_many(list(traces))


def load_estimator(spec: str) -> Estimator:
    """"heuristic", or the path of a model folder (manifest.json + ONNX members)."""
    if spec == "heuristic":
        from appliance.estimators.heuristic import HeuristicEstimator

        return HeuristicEstimator()
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise ValidationError(
            f"estimator {spec!r}: not 'heuristic' and not a model folder (no such directory)")
    try:
        # imported here: the engine is optional for everything that only needs the rules
        from appliance.engine import Engine
    except ImportError as exc:
        raise ValidationError(
            f"estimator {spec!r}: model folders need appliance.engine, which cannot be "
            f"imported ({exc})") from exc
    try:
        engine = Engine.from_dir(folder)
    except Exception as exc:  # ModelFolderError and whatever onnxruntime raises
        raise ValidationError(f"estimator {spec!r}: cannot load the model folder: {exc}") from exc
    return ModelEstimator(engine, folder)


__all__ = ["Estimator", "ModelEstimator", "load_estimator"]
