"""Where training holes come from: a store snapshot, the synthetic generator, real labelled logs."""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import ValidationError
from appliance.points import POINT_NAMES, DepthPoints
from appliance.trace import Trace


@dataclass(frozen=True)
class TrainHole:
    trace: Trace
    label: DepthPoints
    group: str  # holes of one group never sit in both the training and validation part of a fold
    hole_id: str


def from_snapshot(snapshot_dir: str | Path) -> list[TrainHole]:
    from appliance.store.snapshot import read_snapshot

    return [TrainHole(h.trace, h.label, str(h.group), str(h.hole_id))
            for h in read_snapshot(Path(snapshot_dir))]


@dataclass(frozen=True)
class Fleet:
    """Several rigs' snapshots as one training set."""

    holes: list[TrainHole]
    rigs: dict[str, int]  # rig name -> holes it gave
    fold_by: str  # "rig": each rig is one group; "group": its own groups, kept per rig
    duplicates: int  # holes found on more than one rig, kept once (the first rig's)


def from_snapshots(snapshot_dirs: Sequence[str | Path], folds: int) -> Fleet:
    """One snapshot as it is; several (a fleet) with each hole's group named after its rig.
    With at least as many rigs as folds, a rig is a group: every fold is then judged on rigs
    its member never saw, the figure that says how a fleet model does on a new rig. With
    fewer rigs, each rig's groups are kept apart (rig/group) and spread over the folds."""
    from appliance.store.snapshot import read_manifest

    dirs = [Path(d) for d in snapshot_dirs]
    if len(dirs) == 1:
        only = from_snapshot(dirs[0])
        return Fleet(only, {_rig_name(read_manifest(dirs[0]), dirs[0]): len(only)},
                     "group", 0)
    names: list[str] = []
    for d in dirs:
        name = _rig_name(read_manifest(d), d)
        names.append(name if name not in names else f"{name}-{len(names)}")
    fold_by = "rig" if len(dirs) >= folds else "group"
    seen: set[str] = set()
    holes: list[TrainHole] = []
    rigs: dict[str, int] = {}
    duplicates = 0
    for d, rig in zip(dirs, names, strict=True):
        rigs[rig] = 0
        for h in from_snapshot(d):
            key = h.trace.meta.content_hash
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            group = rig if fold_by == "rig" else f"{rig}/{h.group}"
            holes.append(TrainHole(h.trace, h.label, group, f"{rig}/{h.hole_id}"))
            rigs[rig] += 1
    return Fleet(holes, rigs, fold_by, duplicates)


def _rig_name(manifest: dict[str, Any], folder: Path) -> str:
    return str(manifest.get("rig") or folder.resolve().name)


def synthetic(n: int, seed: int) -> list[TrainHole]:
    """Generated holes; each is its own group (they are independent draws)."""
    from appliance.synth import generate

    return [TrainHole(h.trace, h.truth, f"synthetic:{seed}:{i}", f"synthetic-{seed}-{i}")
            for i, h in enumerate(generate(n, seed))]


def _float_or_none(text: str) -> float | None:
    text = (text or "").strip()
    if not text:
        return None
    v = float(text)
    return None if math.isnan(v) else v


def real_labelled(labels_csv: str | Path, manifest_csv: str | Path | None = None,
                  ) -> tuple[list[TrainHole], list[str]]:
    """The labelled real logs of a labels.csv (paths relative to its folder), grouped by the
    MANIFEST.csv source_group when given (else by folder). Returns (holes, problems)."""
    from appliance.ingest import parse_file

    labels_csv = Path(labels_csv)
    root = labels_csv.parent
    groups: dict[str, str] = {}
    if manifest_csv is not None and Path(manifest_csv).is_file():
        with open(manifest_csv, newline="", encoding="utf-8") as f:
            groups = {r["path"]: r["source_group"] for r in csv.DictReader(f)}
    holes: list[TrainHole] = []
    problems: list[str] = []
    with open(labels_csv, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            path = row["path"]
            try:
                trace = parse_file(root / path)
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop a training run
                problems.append(f"{path}: {exc}")
                continue
            label = DepthPoints(*(_float_or_none(row[f"{n}_mm"]) for n in POINT_NAMES))
            group = groups.get(path, path.split("/")[0])
            holes.append(TrainHole(trace, label, group, path))
    return holes, problems


def dataset_hash(holes: list[TrainHole]) -> str:
    """Content hash of what a run trains on: each trace's content hash, its label and group."""
    h = hashlib.sha256()
    for hole in holes:
        lab = ",".join("" if hole.label.get(n) is None else f"{hole.label.get(n):.4f}"
                       for n in POINT_NAMES)
        h.update(f"{hole.trace.meta.content_hash}|{lab}|{hole.group}\n".encode())
    return h.hexdigest()


def check_holes(holes: list[TrainHole], folds: int) -> None:
    if not holes:
        raise ValidationError("training set is empty: give --dataset and/or --synthetic N")
    n_groups = len({h.group for h in holes})
    if n_groups < folds:
        raise ValidationError(f"{folds}-fold cross-validation needs at least {folds} groups of "
                              f"holes; the training set has {n_groups}")
