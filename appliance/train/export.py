"""Members -> ONNX (dynamo exporter), probe, manifest: the model folder of the shared contract.

The folder is assembled under a temporary name in the destination's parent and renamed
into place, so a reader never sees half a model.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from safetensors.torch import load_file, save_file

from appliance.engine import manifest as engine_manifest
from appliance.engine.manifest import sha256_file
from appliance.errors import ValidationError
from appliance.features import FeatureBatch, FeatureSpec, decode, points_array
from appliance.train.served_form import served_form

MANIFEST_FORMAT = 1
PARITY_ATOL = 1e-4
INPUT_NAMES = ["x", "scalars"]
# Loggers of the dynamo exporter's layers (torch.export tracing, the ONNX translation,
# onnxscript's optimiser and rewriter): at INFO/WARNING they report their own progress and
# known limitations (torchvision ops skipped, axis names unused), nothing about our model.
EXPORTER_LOGGERS = ("torch.onnx", "torch.export", "torch._export", "torch._dynamo",
                    "torch.fx", "onnxscript", "onnx_ir")
OUTPUT_NAMES = ["scores", "presence", "offset"]


class ExportError(Exception):
    """The exported ONNX graph does not reproduce the torch model."""


def strip_debug_metadata(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Drop doc strings and the exporter's per-node metadata (stack traces, module paths):
    they bloat the file and leak source paths; inference needs none of it."""
    proto.doc_string = ""
    del proto.metadata_props[:]

    def clean_graph(g: onnx.GraphProto) -> None:
        g.doc_string = ""
        del g.metadata_props[:]
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            vi.doc_string = ""
            del vi.metadata_props[:]
        for init in g.initializer:
            init.doc_string = ""
            del init.metadata_props[:]
        for node in g.node:
            node.doc_string = ""
            del node.metadata_props[:]
            for attr in node.attribute:
                attr.doc_string = ""
                if attr.type == onnx.AttributeProto.GRAPH:
                    clean_graph(attr.g)
                for sub in attr.graphs:
                    clean_graph(sub)

    clean_graph(proto.graph)
    for fn in proto.functions:
        fn.doc_string = ""
        del fn.metadata_props[:]
        for node in fn.node:
            node.doc_string = ""
            del node.metadata_props[:]
    return proto


class WithoutOffset(torch.nn.Module):
    """A member as served when its placement is the convention: scores and presence only.
    Its offset map was trained to 0, so serving it would cost a quarter more onnxruntime
    time (measured: 8.8 against 7.0 ms per hole for 5 members) to add nothing."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, scalars: torch.Tensor) -> tuple[torch.Tensor, ...]:
        scores, presence, _ = self.model(x, scalars)
        return scores, presence


def export_onnx(model: torch.nn.Module, path: Path, example_x: np.ndarray,
                example_scalars: np.ndarray, offset: bool = True, as_trained: bool = False,
                ) -> None:
    """torch.onnx.export(dynamo=True) of the model's served form (appliance.train.served_form)
    with a dynamic batch dimension, metadata stripped; `offset` False leaves the offset output
    (and the branch behind it) out of the graph; `as_trained` exports the training module
    itself (benchmarks/export_form.py compares the two)."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    form = model.eval() if as_trained else served_form(model)
    served = form if offset else WithoutOffset(form).eval()
    names = OUTPUT_NAMES if offset else OUTPUT_NAMES[:2]
    with quiet_exporter():
        program = torch.onnx.export(
            served, (torch.from_numpy(example_x), torch.from_numpy(example_scalars)),
            dynamo=True, input_names=INPUT_NAMES, output_names=names,
            dynamic_shapes={"x": {0: batch}, "scalars": {0: batch}}, verbose=False)
    proto = strip_debug_metadata(program.model_proto)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


@contextmanager
def quiet_exporter() -> Iterator[None]:
    """Silence the exporter's chatter for the duration of one export: its warnings, its
    loggers below ERROR, and what it prints (onnxscript's "Applied N of general pattern
    rewrite rules"). Whether the export worked is told by the parity check that follows,
    not by these lines; `appliance train` printed ~60 of them per model.

    An exception still propagates unchanged; what was held back is written to stderr first,
    as the context of the failure. Process-wide state (sys.stdout, the warning filters) is
    swapped: training exports from one thread, in a process of its own under the daemon."""
    held = io.StringIO()
    loggers = [logging.getLogger(name) for name in EXPORTER_LOGGERS]
    levels = [lg.level for lg in loggers]
    real_stderr = sys.stderr
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), redirect_stdout(held), redirect_stderr(held):
            warnings.simplefilter("ignore")
            yield
    except BaseException:
        real_stderr.write(held.getvalue())
        raise
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@torch.no_grad()
def torch_outputs(model: torch.nn.Module, x: np.ndarray,
                  scalars: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, presence, offset), in OUTPUT_NAMES order."""
    model.eval()
    scores, presence, offset = model(torch.from_numpy(x), torch.from_numpy(scalars))
    return scores.numpy(), presence.numpy(), offset.numpy()


def check_parity(model: torch.nn.Module, onnx_path: Path, x: np.ndarray,
                 scalars: np.ndarray) -> float:
    """Max abs difference between onnxruntime and torch on (x, scalars); raises ExportError
    above PARITY_ATOL."""
    sess = session(onnx_path)
    names = [o.name for o in sess.get_outputs()]
    got = sess.run(names, {"x": x, "scalars": scalars})
    want = torch_outputs(model, x, scalars)[:len(names)]
    diff = max(float(np.max(np.abs(g - w))) for g, w in zip(got, want, strict=True))
    if not diff <= PARITY_ATOL:
        raise ExportError(f"{onnx_path.name}: onnxruntime differs from torch by {diff:.3g} "
                          f"(> {PARITY_ATOL}) on a batch of {len(x)}")
    return diff


def export_checked(model: torch.nn.Module, path: Path, x: np.ndarray, scalars: np.ndarray,
                   offset: bool) -> float:
    """export_onnx with the probe's first two holes as the example, then check_parity on the
    whole probe and on a batch of another size and other values than the example: a graph
    that baked in the example's shape or mistranslated the patching fails there. Returns the
    worse parity."""
    rng = np.random.default_rng(12345)
    other_b = 3 if len(x) != 3 else 5
    other_x = (rng.standard_normal((other_b, *x.shape[1:])) * 2).astype(np.float32)
    other_s = rng.standard_normal((other_b, scalars.shape[1])).astype(np.float32)
    export_onnx(model, path, x[:2], scalars[:2], offset=offset)
    return max(check_parity(model, path, x, scalars),
               check_parity(model, path, other_x, other_s))


def read_manifest(model_dir: str | Path) -> dict[str, Any]:
    """A model folder's manifest (checked by the serving side's reader, files hash-verified),
    as the raw dict; a parent for fine-tuning must also carry its torch weights and config."""
    manifest = engine_manifest.read_manifest(model_dir)
    problems = engine_manifest.verify_files(manifest)
    if problems:
        raise ValidationError(f"{model_dir}: model folder is damaged: {'; '.join(problems)}")
    for key in ("config", "weights"):
        if not manifest.raw.get(key):
            raise ValidationError(f"{model_dir}/manifest.json: {key!r} is missing or empty "
                                  "(needed to fine-tune from this folder)")
    return manifest.raw


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_model_folder(out_dir: str | Path, members: list[torch.nn.Module], *, arch: str,
                       config: dict[str, Any], spec: FeatureSpec, probe: FeatureBatch, version: str,
                       parent: str | None, dataset_hash: str | None, training: dict[str, Any],
                       metrics: dict[str, Any], created_at: datetime,
                       card_fn: Callable[[dict[str, Any]], str] | None = None,
                       placement: dict[str, Any] | None = None,
                       review: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export every member (export_checked) and write the folder. Returns the manifest."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "members").mkdir(parents=True)
    (tmp / "weights").mkdir()
    try:
        # a model trained on the convention serves without its (zero) placement branch
        learnt = (placement or {}).get("mode", "learn") != "convention"
        probe_arrays: dict[str, np.ndarray] = {"x": probe.x, "scalars": probe.scalars,
                                               "origin_mm": probe.origin_mm}
        parity: list[float] = []
        for i, model in enumerate(members):
            parity.append(export_checked(model, tmp / "members" / f"m{i}.onnx", probe.x,
                                         probe.scalars, offset=learnt))
            scores, presence, offset = torch_outputs(model, probe.x, probe.scalars)
            probe_arrays[f"scores_{i}"] = scores
            probe_arrays[f"presence_{i}"] = presence
            if learnt:
                probe_arrays[f"offset_{i}"] = offset
            probe_arrays[f"points_{i}"] = points_array(decode(scores, presence, probe, spec))
            save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
                      str(tmp / "weights" / f"m{i}.safetensors"))
        # numeric arrays only; named, allow_pickle is also not left for **probe_arrays to
        # fill (numpy's stub types it bool, so a dict of arrays could not bind to it)
        np.savez_compressed(tmp / "probe.npz", allow_pickle=False, **probe_arrays)
        manifest = {
            "format": MANIFEST_FORMAT,
            "version": version,
            "architecture": arch,
            "config": config,
            "feature_spec": spec.to_dict(),
            # see appliance.engine.manifest: points placed on their ramps' crossings, then
            # moved by the learnt residual
            "decode": {"place_on_ramps": True, "residual": learnt},
            "placement": placement,
            "review": review,
            "members": [f"members/m{i}.onnx" for i in range(len(members))],
            "weights": [f"weights/m{i}.safetensors" for i in range(len(members))],
            "probe": "probe.npz",
            "files": {},
            "parent": parent,
            "dataset_hash": dataset_hash,
            "training": training,
            "metrics": {**metrics, "export_parity_max_abs": max(parity) if parity else None},
            "created_at": created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if card_fn is not None:
            (tmp / "README.md").write_text(card_fn(manifest), encoding="utf-8")
        manifest["files"] = {p.relative_to(tmp).as_posix(): sha256_file(p)
                             for p in sorted(tmp.rglob("*")) if p.is_file()}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=float) + "\n",
                                           encoding="utf-8")
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def load_members(model_dir: Path, manifest: dict[str, Any]) -> list[torch.nn.Module]:
    """A folder's members as torch models (eval mode), from its weights."""
    from appliance.train.model import build_model

    members: list[torch.nn.Module] = []
    for rel in manifest["weights"]:
        model = build_model(manifest["architecture"], manifest["config"])
        model.load_parent_state(load_file(str(model_dir / rel)))
        members.append(model.eval())
    return members


def reexport_members(model_dir: str | Path, card_notes: str = "") -> float:
    """Export a folder's members again from its own weights (after a change to how models
    are exported, such as appliance.train.served_form), each through export_checked on the
    folder's probe. The weights, the probe and so the version are unchanged; the members'
    hashes, the parity figure and the card are updated (card_notes: what the folder's card
    adds to model_card's text). Returns the worst parity. Nothing in the folder is touched
    if any member fails.
    """
    from appliance.train.card import refresh_card

    model_dir = Path(model_dir)
    raw = read_manifest(model_dir)
    learnt = bool((raw.get("decode") or {}).get("residual", False))
    probe = np.load(model_dir / raw["probe"], allow_pickle=False)
    tmp = model_dir / f".members.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        parity = [export_checked(model, tmp / Path(rel).name, probe["x"], probe["scalars"],
                                 offset=learnt)
                  for model, rel in zip(load_members(model_dir, raw), raw["members"],
                                        strict=True)]
        for rel in raw["members"]:
            os.replace(tmp / Path(rel).name, model_dir / rel)
            raw["files"][rel] = sha256_file(model_dir / rel)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    raw["metrics"]["export_parity_max_abs"] = max(parity)
    refresh_card(model_dir, card_notes, raw)
    return max(parity)
