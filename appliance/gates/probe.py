"""probe.npz: inputs the trainer ran through torch, with torch's outputs per member."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from appliance.engine.manifest import ModelFolderError, ModelManifest, read_verified


@dataclass(frozen=True)
class Probe:
    x: np.ndarray  # [B, C, L] float32
    scalars: np.ndarray  # [B, S] float32
    scores: tuple[np.ndarray, ...]  # per member [B, 3, L]
    presence: tuple[np.ndarray, ...]  # per member [B, 3]
    points: tuple[np.ndarray | None, ...]  # per member [B, 3] mm, NaN absent (optional)
    origin_mm: np.ndarray | None = None  # [B] depth of grid position 0 (optional)
    offset: tuple[np.ndarray | None, ...] = ()  # per member [B, 3, L] (learnt placement)


def load_probe(manifest: ModelManifest) -> Probe:
    where = manifest.folder / manifest.probe
    try:
        # allow_pickle=False: a model folder is input, and pickles execute code.
        with np.load(io.BytesIO(read_verified(manifest, manifest.probe)),
                     allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ModelFolderError:
        raise
    except Exception as exc:
        raise ModelFolderError(f"{where}: not a readable .npz ({exc})") from exc
    n = len(manifest.members)
    needed = ["x", "scalars"] + [f"{k}_{i}" for i in range(n) for k in ("scores", "presence")]
    missing = [k for k in needed if k not in arrays]
    if missing:
        raise ModelFolderError(f"{where}: missing array(s) {', '.join(missing)}")
    x = arrays["x"].astype(np.float32, copy=False)
    scalars = arrays["scalars"].astype(np.float32, copy=False)
    if x.ndim != 3 or scalars.ndim != 2 or len(x) != len(scalars) or len(x) == 0:
        raise ModelFolderError(f"{where}: x {x.shape} / scalars {scalars.shape} are not "
                               "[B, C, L] / [B, S] with the same B >= 1")
    return Probe(
        x=x,
        scalars=scalars,
        scores=tuple(arrays[f"scores_{i}"] for i in range(n)),
        presence=tuple(arrays[f"presence_{i}"] for i in range(n)),
        points=tuple(arrays.get(f"points_{i}") for i in range(n)),
        origin_mm=arrays.get("origin_mm"),
        offset=tuple(arrays.get(f"offset_{i}") for i in range(n)),
    )
