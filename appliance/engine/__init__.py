"""The ONNX Runtime ensemble that serves estimates (no torch here, ever).

- Engine.from_dir(model_dir) -> Engine: members loaded (hash-checked) and warmed;
  engine.estimate(trace), engine.estimate_many(traces) -> DepthEstimate (heuristic fallback
  with a note when the model cannot answer a hole).
- ModelHolder / ActiveModel: the one swappable reference requests read once.
- read_manifest / verify_files / ModelFolderError: the model folder contract.
"""

from appliance.engine.ensemble import Engine, ModelRunError
from appliance.engine.holder import ActiveModel, ModelHolder
from appliance.engine.manifest import (
    ModelFolderError,
    ModelManifest,
    read_manifest,
    sha256_file,
    verify_files,
)

__all__ = [
    "ActiveModel", "Engine", "ModelFolderError", "ModelHolder", "ModelManifest",
    "ModelRunError", "read_manifest", "sha256_file", "verify_files",
]
