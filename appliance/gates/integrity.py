"""Integrity gate: the folder is complete and untampered, members load, shapes match the
feature spec, and the outputs on the probe are finite. Every other gate needs this one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from appliance.engine.ensemble import Engine
from appliance.engine.manifest import ModelFolderError, read_manifest, read_verified, verify_files
from appliance.engine.sessions import (
    INPUT_NAMES,
    OFFSET_NAME,
    OUTPUT_NAMES,
    io_signature,
    make_session,
    output_names,
)
from appliance.features import FeatureSpec
from appliance.gates.probe import Probe, load_probe
from appliance.gates.report import FAIL, PASS, GateResult

GATE = "integrity"


def check_integrity(folder: str | Path) -> tuple[GateResult, Engine | None, Probe | None]:
    """The gate's result and, when it passes, the loaded engine and probe for the next gates."""
    problems: list[str] = []
    details: dict[str, Any] = {"folder": str(folder)}
    try:
        manifest = read_manifest(folder)
    except ModelFolderError as exc:
        return _fail(f"manifest: {exc}", [str(exc)], details), None, None
    details["members"] = len(manifest.members)
    hash_problems = verify_files(manifest)
    if hash_problems:
        details["files"] = hash_problems
        return _fail(f"{len(hash_problems)} file(s) missing or altered: {hash_problems[0]}",
                     hash_problems, details), None, None
    try:
        spec = FeatureSpec.from_dict(manifest.feature_spec)
    except Exception as exc:
        return _fail(f"feature_spec unusable: {exc}", [str(exc)], details), None, None
    try:
        probe = load_probe(manifest)
    except ModelFolderError as exc:
        return _fail(str(exc), [str(exc)], details), None, None

    sessions = []
    shapes = {}
    for i, rel in enumerate(manifest.members):
        try:
            session = make_session(read_verified(manifest, rel))
        except Exception as exc:
            problems.append(f"{rel}: onnxruntime cannot load it ({_short(exc)})")
            continue
        sig = io_signature(session)
        shapes[rel] = sig
        problems += [f"{rel}: {p}" for p in _signature_problems(sig, spec)]
        if manifest.residual and OFFSET_NAME not in sig["outputs"]:
            problems.append(f"{rel}: the manifest's decode.residual needs the "
                            f"{OFFSET_NAME!r} output, which this member lacks")
        if problems:
            continue
        problems += [f"{rel}: {p}" for p in _probe_problems(session, probe, i)]
        sessions.append(session)
    details["signatures"] = shapes
    if problems:
        details["problems"] = problems
        return _fail(problems[0] + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""),
                     problems, details), None, None
    try:
        engine = Engine(manifest, spec, sessions)
    except ModelFolderError as exc:
        return _fail(str(exc), [str(exc)], details), None, None
    return (GateResult(GATE, PASS, f"{len(sessions)} member(s) load, shapes match, finite outputs",
                       details), engine, probe)


def _signature_problems(sig: dict[str, dict[str, list[Any]]], spec: FeatureSpec) -> list[str]:
    expected = {
        "inputs": {"x": [None, spec.n_channels, spec.length], "scalars": [None, spec.n_scalars]},
        "outputs": {"scores": [None, 3, spec.length], "presence": [None, 3],
                    OFFSET_NAME: [None, 3, spec.length]},
    }
    problems = []
    # the offset output is optional in the contract: folders from before learnt placement
    outputs = OUTPUT_NAMES + ((OFFSET_NAME,) if OFFSET_NAME in sig["outputs"] else ())
    for side, names in (("inputs", INPUT_NAMES), ("outputs", outputs)):
        got = sig[side]
        if sorted(got) != sorted(names):
            problems.append(f"{side} are {sorted(got)}, the contract says {sorted(names)}")
            continue
        for name in names:
            want, have = expected[side][name], got[name]
            if len(have) != len(want):
                problems.append(f"{side[:-1]} {name!r} has shape {have}, expected {_fmt(want)}")
                continue
            if isinstance(have[0], int) and have[0] > 0:
                problems.append(f"{side[:-1]} {name!r} has a fixed batch size {have[0]}; "
                                "the batch dimension must be dynamic")
            for d, (w, h) in enumerate(zip(want[1:], have[1:], strict=True), start=1):
                if isinstance(h, int) and h != w:
                    problems.append(f"{side[:-1]} {name!r} dimension {d} is {h}, the feature "
                                    f"spec needs {w} (shape {have}, expected {_fmt(want)})")
    return problems


def _probe_problems(session: ort.InferenceSession, probe: Probe, member: int) -> list[str]:
    problems = []
    # Full probe batch, then a single hole: a dynamic batch must really be dynamic.
    for x, s in ((probe.x, probe.scalars), (probe.x[:1], probe.scalars[:1])):
        try:
            scores, presence, *rest = session.run(list(output_names(session)),
                                                  {"x": x, "scalars": s})
        except Exception as exc:
            return [f"fails on the probe batch of {len(x)} ({_short(exc)})"]
        b = len(x)
        if scores.shape != (b, 3, x.shape[2]) or presence.shape != (b, 3):
            problems.append(f"output shapes {scores.shape}/{presence.shape} on a batch of {b}")
        if rest and rest[0].shape != scores.shape:
            problems.append(f"offset shape {rest[0].shape} on a batch of {b}")
        bad = sum(int((~np.isfinite(a)).sum()) for a in (scores, presence, *rest))
        if bad:
            problems.append(f"{bad} non-finite output value(s) (NaN/inf) on the probe "
                            f"(member {member})")
        if problems:
            break
    return problems


def _fail(summary: str, problems: list[str], details: dict[str, Any]) -> GateResult:
    details.setdefault("problems", problems)
    return GateResult(GATE, FAIL, summary, details)


def _fmt(shape: list[Any]) -> str:
    return "[" + ", ".join("batch" if d is None else str(d) for d in shape) + "]"


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
