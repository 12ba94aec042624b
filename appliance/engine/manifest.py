"""A model folder's manifest.json: reading it, checking it is complete, verifying file hashes.

The folder layout is the shared contract (see the learning core's export): one .onnx per
member, safetensors weights, probe.npz, and `files` mapping every file but the manifest to its
sha256. Engine, registry and gates all read a folder through this one module.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.errors import ValidationError

MANIFEST_NAME = "manifest.json"
SUPPORTED_FORMAT = 1
_REQUIRED_KEYS = ("format", "version", "architecture", "feature_spec", "members", "probe", "files")
_CHUNK = 1 << 20


class ModelFolderError(ValidationError):
    """A model folder is incomplete, inconsistent or tampered with; the message names the file."""


@dataclass(frozen=True)
class ModelManifest:
    folder: Path
    version: str
    architecture: str
    feature_spec: dict[str, Any]
    members: tuple[str, ...]
    weights: tuple[str, ...]
    probe: str
    files: dict[str, str]
    parent: str | None
    dataset_hash: str | None
    created_at: str | None
    metrics: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    # decode.place_on_ramps: the ensemble's points are moved onto their ramps' half-height
    # crossings (appliance.estimators.snap). Written by every training run since feature
    # version 3; folders without it are served exactly as they were gated.
    place_on_ramps: bool = False
    # decode.residual: the members' offset output moves each placed point by the rig's
    # learnt residual from its crossing (models trained since learnt placement).
    residual: bool = False
    # review: the fitted review-priority calibration (appliance.engine.review), or None
    review: dict[str, Any] | None = None

    def member_paths(self) -> list[Path]:
        return [self.folder / m for m in self.members]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(folder: str | Path) -> ModelManifest:
    """Parse and structurally check `<folder>/manifest.json` (no hashing: see verify_files)."""
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise ModelFolderError(f"{folder}: model folder does not exist")
    if not path.is_file():
        raise ModelFolderError(f"{path}: manifest.json is missing")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFolderError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise ModelFolderError(f"{path}: expected a JSON object")
    missing = [k for k in _REQUIRED_KEYS if k not in raw]
    if missing:
        raise ModelFolderError(f"{path}: missing key(s) {', '.join(missing)}")
    if raw["format"] != SUPPORTED_FORMAT:
        raise ModelFolderError(
            f"{path}: format {raw['format']!r} is not supported (expected {SUPPORTED_FORMAT})"
        )
    version = raw["version"]
    if not isinstance(version, str) or not _safe_name(version):
        raise ModelFolderError(
            f"{path}: version {version!r} must be a non-empty name of letters, digits, '.', '_'"
            " or '-'"
        )
    members = raw["members"]
    if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
        raise ModelFolderError(f"{path}: 'members' must be a non-empty list of paths")
    files = raw["files"]
    if not isinstance(files, dict):
        raise ModelFolderError(f"{path}: 'files' must map relative paths to sha256 hex")
    for rel in [*members, raw["probe"], *raw.get("weights", [])]:
        _check_relative(path, rel)
        if rel not in files:
            raise ModelFolderError(f"{path}: {rel} is not listed in 'files' (no hash to check)")
    for rel in files:
        _check_relative(path, rel)
    if not isinstance(raw["feature_spec"], dict):
        raise ModelFolderError(f"{path}: 'feature_spec' must be an object")
    decode = raw.get("decode", {})
    if not isinstance(decode, dict) or not all(
            isinstance(decode.get(k, False), bool) for k in ("place_on_ramps", "residual")):
        raise ModelFolderError(f"{path}: 'decode' must be an object like "
                               '{"place_on_ramps": true, "residual": true}')
    review = raw.get("review")
    if review is not None and not isinstance(review, dict):
        raise ModelFolderError(f"{path}: 'review' must be an object (a review calibration)")
    return ModelManifest(
        folder=folder,
        version=version,
        architecture=str(raw["architecture"]),
        feature_spec=raw["feature_spec"],
        members=tuple(members),
        weights=tuple(raw.get("weights") or ()),
        probe=raw["probe"],
        files=dict(files),
        parent=raw.get("parent"),
        dataset_hash=raw.get("dataset_hash"),
        created_at=raw.get("created_at"),
        metrics=raw.get("metrics") or {},
        raw=raw,
        place_on_ramps=decode.get("place_on_ramps", False),
        residual=decode.get("residual", False),
        review=review,
    )


def verify_files(manifest: ModelManifest) -> list[str]:
    """Every problem with the folder's files: listed but missing, altered (hash mismatch), or
    present but not listed (the manifest must vouch for every file); [] if none."""
    problems = []
    for p in sorted(manifest.folder.rglob("*")):
        rel = p.relative_to(manifest.folder).as_posix()
        if p.is_file() and rel != MANIFEST_NAME and rel not in manifest.files:
            problems.append(f"{rel}: file is not listed in the manifest")
    for rel, expected in sorted(manifest.files.items()):
        p = manifest.folder / rel
        if not p.is_file():
            problems.append(f"{rel}: file is missing")
            continue
        actual = sha256_file(p)
        if actual != expected:
            problems.append(
                f"{rel}: sha256 {actual[:12]}... does not match the manifest's {expected[:12]}..."
            )
    return problems


def read_verified(manifest: ModelManifest, rel: str) -> bytes:
    """A listed file's bytes, checked against its hash: what was verified is what gets loaded."""
    p = manifest.folder / rel
    try:
        data = p.read_bytes()
    except FileNotFoundError as exc:
        raise ModelFolderError(f"{p}: file is missing") from exc
    expected = manifest.files.get(rel)
    if expected is None:
        raise ModelFolderError(f"{p}: not listed in manifest 'files'")
    if sha256_bytes(data) != expected:
        raise ModelFolderError(f"{p}: sha256 does not match the manifest (file altered)")
    return data


def _safe_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and all(c.isalnum() or c in "._-" for c in name)


def _check_relative(manifest_path: Path, rel: Any) -> None:
    if not isinstance(rel, str) or not rel or rel.startswith("/") or ".." in Path(rel).parts:
        raise ModelFolderError(f"{manifest_path}: {rel!r} is not a relative path inside the folder")
