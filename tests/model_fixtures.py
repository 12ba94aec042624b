"""Tiny but real ONNX model folders (shared contract) built with onnx.helper, no torch.

The member is a 1-D convolution over the feature channels: the entry score is the torque
slope channel and the exit score its negation, read `shift` grid cells deeper, so on a clean
ramp the entry lands on the steepest rise and the exit on the steepest fall; a non-zero shift
makes a deliberately biased (worse) model. Presence logits are constants (+bias). The probe's
"torch outputs" come from an independent numpy implementation of the same maths.

Also a tiny Trace builder (one or two layers, linear ramps) so tests need no other room.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from appliance.features import FeatureBatch, FeatureSpec, decode, points_array
from appliance.trace import ProgramStep, Trace, TraceMeta

OPSET = 17
DTORQUE = "dtorque"
DEFAULT_PRESENCE = (6.0, -6.0, 6.0)
MAX_SHIFT = 12  # entry present, transition absent, exit present


def member_weights(
    spec: FeatureSpec, shift: int = 0, gain: float = 4.0, n_in: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    c_in = n_in if n_in is not None else spec.n_channels
    # One kernel width for every shift, so that models differ in answers, not in cost.
    half = max(abs(shift), MAX_SHIFT)
    w = np.zeros((3, c_in, 2 * half + 1), dtype=np.float32)
    ch = list(spec.channels).index(DTORQUE)
    w[0, ch, half + shift] = gain
    w[2, ch, half + shift] = -gain
    # the transition peaks where the torque does: inside the stack, between entry and exit
    # (where a model that reports it at all would put it)
    w[1, list(spec.channels).index("torque"), half + shift] = gain
    return w, np.zeros(3, dtype=np.float32)


def member_bytes(
    spec: FeatureSpec,
    shift: int = 0,
    gain: float = 4.0,
    presence_bias: tuple[float, float, float] = DEFAULT_PRESENCE,
    n_in: int | None = None,
    slow: int = 0,
) -> bytes:
    """One member; `slow` > 0 adds that many wide convolutions whose result is multiplied
    by zero: same outputs, more work (for the latency gate)."""
    w, b = member_weights(spec, shift, gain, n_in)
    c_in = w.shape[1]
    half = w.shape[2] // 2
    wp = np.zeros((spec.n_scalars, 3), dtype=np.float32)
    bp = np.asarray(presence_bias, dtype=np.float32)
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["s0"], pads=[half, half])]
    extra = []
    prev = "x"
    for i in range(slow):
        nodes.append(helper.make_node("Conv", [prev, "Wslow"], [f"h{i}"], pads=[15, 15]))
        prev = f"h{i}"
    if slow:
        extra = [numpy_helper.from_array(np.full((c_in, c_in, 31), 1e-3, np.float32), "Wslow"),
                 numpy_helper.from_array(np.zeros(1, np.float32), "zero")]
        nodes += [helper.make_node("ReduceMean", [prev], ["m"], keepdims=1),
                  helper.make_node("Mul", ["m", "zero"], ["m0"]),
                  helper.make_node("Add", ["s0", "m0"], ["scores"])]
    else:
        nodes.append(helper.make_node("Identity", ["s0"], ["scores"]))
    graph = helper.make_graph(
        [
            *nodes,
            helper.make_node("MatMul", ["scalars", "Wp"], ["p0"]),
            helper.make_node("Add", ["p0", "bp"], ["presence"]),
        ],
        "fixture_member",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", c_in, spec.length]),
            helper.make_tensor_value_info(
                "scalars", TensorProto.FLOAT, ["batch", spec.n_scalars]
            ),
        ],
        [
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 3, spec.length]),
            helper.make_tensor_value_info("presence", TensorProto.FLOAT, ["batch", 3]),
        ],
        initializer=[
            numpy_helper.from_array(w, "W"),
            numpy_helper.from_array(b, "B"),
            numpy_helper.from_array(wp, "Wp"),
            numpy_helper.from_array(bp, "bp"),
            *extra,
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def reference_outputs(
    x: np.ndarray,
    scalars: np.ndarray,
    spec: FeatureSpec,
    shift: int = 0,
    gain: float = 4.0,
    presence_bias: tuple[float, float, float] = DEFAULT_PRESENCE,
) -> tuple[np.ndarray, np.ndarray]:
    """The member's maths in plain numpy (stands in for torch's outputs in the probe)."""
    w, b = member_weights(spec, shift, gain)
    half = w.shape[2] // 2
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (half, half)))
    length = x.shape[2]
    scores = np.zeros((x.shape[0], 3, length)) + b[None, :, None]
    for k in range(w.shape[2]):
        scores += np.einsum("oc,ncl->nol", w[:, :, k], xp[:, :, k : k + length])
    presence = scalars.astype(np.float64) @ np.zeros((spec.n_scalars, 3)) + np.asarray(
        presence_bias
    )
    return scores.astype(np.float32), presence.astype(np.float32)


def build_model_folder(
    parent_dir: Path,
    version: str,
    *,
    n_members: int = 3,
    shift: int | list[int] = 0,
    gain: float = 4.0,
    presence_bias: tuple[float, float, float] = DEFAULT_PRESENCE,
    spec: FeatureSpec | None = None,
    parent: str | None = None,
    n_probe: int = 2,
    seed: int = 0,
    slow: int = 0,
    n_in: int | None = None,
    place_on_ramps: bool | None = None,
) -> Path:
    """Write `<parent_dir>/<version>/` per the contract (temp name, then rename).

    place_on_ramps None leaves `decode` out of the manifest (a folder from before it)."""
    spec = spec or FeatureSpec()
    shifts = shift if isinstance(shift, list) else [shift] * n_members
    rng = np.random.default_rng(seed)
    final = parent_dir / version
    tmp = parent_dir / f".tmp-{version}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "members").mkdir(parents=True)
    (tmp / "weights").mkdir()
    x = rng.normal(size=(n_probe, spec.n_channels, spec.length)).astype(np.float32)
    scalars = rng.normal(size=(n_probe, spec.n_scalars)).astype(np.float32)
    probe: dict[str, np.ndarray] = {"x": x, "scalars": scalars}
    batch = FeatureBatch(x, scalars, np.full(n_probe, spec.start_mm), ("probe",) * n_probe)
    members, weights = [], []
    for i, s in enumerate(shifts):
        (tmp / f"members/m{i}.onnx").write_bytes(
            member_bytes(spec, s, gain, presence_bias, n_in=n_in, slow=slow)
        )
        # Stand-in for the torch weights: the raw conv kernel (the engine never reads it).
        w, _ = member_weights(spec, s, gain)
        (tmp / f"weights/m{i}.safetensors").write_bytes(w.tobytes())
        scores, pres = reference_outputs(x, scalars, spec, s, gain, presence_bias)
        probe[f"scores_{i}"] = scores
        probe[f"presence_{i}"] = pres
        probe[f"points_{i}"] = points_array(decode(scores, pres, batch, spec))
        members.append(f"members/m{i}.onnx")
        weights.append(f"weights/m{i}.safetensors")
    with open(tmp / "probe.npz", "wb") as fh:
        np.savez(fh, **probe)
    rewrite_manifest(tmp, {
        "format": 1,
        "version": version,
        "architecture": "cnn",
        "config": {"fixture": "conv1d", "shifts": shifts, "gain": gain},
        "feature_spec": spec.to_dict(),
        **({} if place_on_ramps is None else {"decode": {"place_on_ramps": place_on_ramps}}),
        "members": members,
        "weights": weights,
        "probe": "probe.npz",
        "files": {},
        "parent": parent,
        "dataset_hash": None,
        "training": {"fixture": True},
        "metrics": {},
        "created_at": datetime.now(UTC).isoformat(),
    })
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


def rewrite_manifest(folder: Path, manifest: dict | None = None) -> dict:
    """(Re)compute `files` hashes of every file but the manifest and write manifest.json."""
    path = folder / "manifest.json"
    manifest = manifest if manifest is not None else json.loads(path.read_text())
    manifest["files"] = {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }
    path.write_text(json.dumps(manifest, indent=2))
    return manifest


def ramp_trace(
    entry_mm: float = 5.0,
    exit_mm: float | None = 20.0,
    level_a: float = 8.0,
    ramp_mm: float = 1.0,
    end_mm: float = 25.0,
    noise_a: float = 0.02,
    seed: int = 0,
    source: str = "ramp",
) -> Trace:
    """A single-layer hole: air, a ramp centred on entry, a level, a ramp down at exit.

    The half-height crossings are exactly entry_mm and exit_mm (noise aside).
    """
    rng = np.random.default_rng(seed)
    depth = np.arange(0.0, end_mm, 0.01)
    # tanh ramps: the half-height crossing and the steepest slope are both at the point
    up = 0.5 * (1.0 + np.tanh((depth - entry_mm) * 4.0 / ramp_mm))
    if exit_mm is None:
        down = np.ones_like(depth)
    else:
        down = 0.5 * (1.0 - np.tanh((depth - exit_mm) * 4.0 / ramp_mm))
    torque = level_a * up * down + rng.normal(0.0, noise_a, depth.size)
    thrust = 0.5 * torque + rng.normal(0.0, noise_a, depth.size)
    n = depth.size
    digest = hashlib.sha256(depth.tobytes() + torque.tobytes()).hexdigest()
    meta = TraceMeta(
        source=source,
        content_hash=digest,
        variant="synthetic",
        program=(ProgramStep(step=1, travel_mm=end_mm, rpm=3000.0, feed_mm_s=1.0),),
        head_local_counter=10,
    )
    return Trace(
        meta=meta,
        depth_mm=depth,
        torque_a=torque,
        thrust_a=thrust,
        step=np.ones(n, dtype=np.int32),
        stop_code=np.zeros(n, dtype=np.int64),
    )
