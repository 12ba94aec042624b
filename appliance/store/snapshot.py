"""Dataset snapshots: the labelled holes a training job reads, frozen on disk.

A training child never opens the database: the daemon exports a snapshot folder
(holes.parquet, samples.parquet, manifest.json with a content hash) and the child reads
it with read_snapshot, which checks every file against the manifest. The exam set
(a stable share of labelled holes, see exam.py) is left out of every snapshot and served
separately by exam_set() to the accuracy gate.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from appliance.errors import NotFoundError, ValidationError
from appliance.points import DepthPoints
from appliance.store import holes as holes_sql
from appliance.store.codec import SAMPLE_COLUMNS, dumps, iso, meta_full, samples_table, utcnow
from appliance.store.facade import Store
from appliance.store.labels import LATEST_LABELS
from appliance.store.rows import fetch_dicts
from appliance.trace import Trace

SNAPSHOT_FORMAT = 1
HOLES_FILE = "holes.parquet"
SAMPLES_FILE = "samples.parquet"
MANIFEST_FILE = "manifest.json"
DATA_FILES = (HOLES_FILE, SAMPLES_FILE)


@dataclass(frozen=True)
class LabelledHole:
    trace: Trace
    label: DepthPoints
    group: str
    hole_id: str


_LABELLED_HOLES = f"""
    SELECT h.hole_id, h.source, h.source_group, h.content_hash, h.variant, h.file_version,
           h.cycle_date, h.drill_serial, h.head_name, h.head_global_counter,
           h.head_local_counter, h.program, h.meta, l.entry_mm, l.transition_mm, l.exit_mm,
           l."by" AS label_by, l."at" AS label_at
    FROM holes h JOIN ({LATEST_LABELS}) l USING (hole_id)
    ORDER BY h.hole_id
"""

_HOLES_SCHEMA = pa.schema([
    ("hole_id", pa.string()),
    ("source", pa.string()),
    ("source_group", pa.string()),
    ("variant", pa.string()),
    ("head_local_counter", pa.int64()),
    ("predrilled", pa.bool_()),
    ("program", pa.string()),
    ("meta", pa.string()),
    ("entry_mm", pa.float64()),
    ("transition_mm", pa.float64()),
    ("exit_mm", pa.float64()),
    ("label_by", pa.string()),
    ("label_at", pa.string()),
])


def _labelled_rows(store: Store) -> list[dict[str, Any]]:
    with store.cursor() as con:
        return fetch_dicts(con, _LABELLED_HOLES, None, ("program", "meta"))


def export_dataset(store: Store, out_dir: Path, rig: str | None = None) -> dict[str, Any]:
    """Write the labelled, non-exam holes to out_dir; returns the manifest.

    Written under a temporary name next to out_dir and renamed into place, so a reader
    never sees a half-written snapshot. out_dir must not exist or be empty.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ValidationError(f"{out_dir} already exists and is not an empty folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    rows = _labelled_rows(store)
    chosen = [r for r in rows if not store.is_exam(r["hole_id"])]
    holes_table = pa.Table.from_pylist([_hole_record(r) for r in chosen], schema=_HOLES_SCHEMA)
    samples_table = _samples_of(store, [r["hole_id"] for r in chosen])

    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        pq.write_table(holes_table, tmp / HOLES_FILE)
        pq.write_table(samples_table, tmp / SAMPLES_FILE)
        files = {name: _sha256_file(tmp / name) for name in DATA_FILES}
        manifest = {
            "format": SNAPSHOT_FORMAT,
            "created_at": iso(utcnow()),
            "n_holes": holes_table.num_rows,
            "n_samples": samples_table.num_rows,
            "n_exam_excluded": len(rows) - len(chosen),
            "exam_share": store.exam_share,
            # names this rig's holes when snapshots of several rigs train one fleet model
            "rig": rig,
            "content_hash": _content_hash(tmp),
            "files": files,
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        if out_dir.exists():
            out_dir.rmdir()
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _columns_of(store: Store, hole_ids: list[str]) -> dict[str, dict[str, np.ndarray]]:
    with store.cursor() as con:
        return holes_sql.columns_by_hole(con, hole_ids)


_SAMPLES_SCHEMA = pa.schema([("hole_id", pa.string())] + [
    (name, pa.from_numpy_dtype(dtype)) for name, dtype in SAMPLE_COLUMNS])


def _samples_of(store: Store, hole_ids: list[str]) -> pa.Table:
    """The samples of these holes, a row each, sorted by hole_id and idx."""
    by_hole = _columns_of(store, hole_ids)
    parts = []
    for hole_id in sorted(by_hole):
        columns = by_hole[hole_id]
        n = len(columns["depth_mm"])
        body = samples_table(n, columns)
        parts.append(body.add_column(0, "hole_id", pa.array([hole_id] * n, pa.string())))
    return pa.concat_tables(parts).cast(_SAMPLES_SCHEMA) if parts else _SAMPLES_SCHEMA.empty_table()


def _hole_record(row: dict[str, Any]) -> dict[str, Any]:
    meta = meta_full(row)
    return {
        "hole_id": row["hole_id"],
        "source": row["source"],
        "source_group": row["source_group"],
        "variant": row["variant"],
        "head_local_counter": row["head_local_counter"],
        "predrilled": meta.get("predrilled"),
        "program": dumps(row["program"]),
        "meta": dumps(meta),
        "entry_mm": row["entry_mm"],
        "transition_mm": row["transition_mm"],
        "exit_mm": row["exit_mm"],
        "label_by": row["label_by"],
        "label_at": row["label_at"],
    }


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _content_hash(folder: Path) -> str:
    """sha256 over the data files' bytes, in a fixed order."""
    digest = hashlib.sha256()
    for name in DATA_FILES:
        with open(folder / name, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def read_manifest(snapshot_dir: Path) -> dict[str, Any]:
    path = Path(snapshot_dir) / MANIFEST_FILE
    if not path.is_file():
        raise NotFoundError(f"{snapshot_dir} is not a dataset snapshot: {MANIFEST_FILE} missing")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValidationError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict):
        raise ValidationError(f"{path}: manifest is {type(manifest).__name__}, not an object")
    if manifest.get("format") != SNAPSHOT_FORMAT:
        raise ValidationError(
            f"{path}: snapshot format {manifest.get('format')!r}, expected {SNAPSHOT_FORMAT}"
        )
    return manifest


def verify_snapshot(snapshot_dir: Path) -> dict[str, Any]:
    """The manifest, after checking every data file's hash and the content hash."""
    snapshot_dir = Path(snapshot_dir)
    manifest = read_manifest(snapshot_dir)
    files = manifest.get("files") or {}
    for name in DATA_FILES:
        path = snapshot_dir / name
        if not path.is_file():
            raise ValidationError(f"{snapshot_dir}: {name} is missing")
        if name not in files:
            raise ValidationError(f"{snapshot_dir}: the manifest has no hash for {name}")
        actual = _sha256_file(path)
        if actual != files[name]:
            raise ValidationError(
                f"{path}: sha256 {actual[:12]}... does not match the manifest "
                f"({str(files[name])[:12]}...): the snapshot was modified or is incomplete"
            )
    if _content_hash(snapshot_dir) != manifest.get("content_hash"):
        raise ValidationError(f"{snapshot_dir}: content_hash does not match the data files")
    return manifest


def read_snapshot(snapshot_dir: Path) -> list[LabelledHole]:
    """Every hole of a verified snapshot, with its trace and label, in hole id order."""
    snapshot_dir = Path(snapshot_dir)
    verify_snapshot(snapshot_dir)
    hole_rows = pq.read_table(snapshot_dir / HOLES_FILE).to_pylist()
    samples = pq.read_table(snapshot_dir / SAMPLES_FILE)
    by_hole = _split_samples(samples)
    out = []
    for row in hole_rows:
        hole_id = row["hole_id"]
        if hole_id not in by_hole:
            raise ValidationError(f"{snapshot_dir}: hole {hole_id} has no samples")
        trace = holes_sql.trace_from_row(row, by_hole[hole_id])
        label = DepthPoints(row["entry_mm"], row["transition_mm"], row["exit_mm"])
        out.append(LabelledHole(trace, label, row["source_group"] or "", hole_id))
    return out


def _split_samples(table: pa.Table) -> dict[str, dict[str, np.ndarray]]:
    """Per hole id, its sample columns (the table is sorted by hole_id, idx)."""
    if table.num_rows == 0:
        return {}
    ids = table.column("hole_id").to_numpy(zero_copy_only=False)
    columns = {
        name: table.column(name).to_numpy(zero_copy_only=False) for name, _ in SAMPLE_COLUMNS
    }
    starts = np.concatenate([[0], np.flatnonzero(ids[1:] != ids[:-1]) + 1, [len(ids)]])
    out = {}
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        out[str(ids[a])] = {name: col[a:b] for name, col in columns.items()}
    return out


def exam_set(store: Store) -> list[LabelledHole]:
    """The labelled holes of the exam set (never in a snapshot), with their latest label."""
    rows = [r for r in _labelled_rows(store) if store.is_exam(r["hole_id"])]
    by_hole = _columns_of(store, [r["hole_id"] for r in rows])
    return [
        LabelledHole(holes_sql.trace_from_row(row, by_hole[row["hole_id"]]),
                     DepthPoints(row["entry_mm"], row["transition_mm"], row["exit_mm"]),
                     row["source_group"] or "", row["hole_id"])
        for row in rows
    ]
