"""Trace <-> columns: how a hole is laid out in the holes/traces tables and in snapshots.

The same columns serve the DuckDB tables and the Parquet snapshot, so a trace read back
from either is built by the same code. In the store a hole's samples are one compressed
block (SampleBlock): a row per sample wrote ~160 KB of write-ahead log per hole, and DuckDB's
checkpoint, run inside whichever commit crossed the threshold, held every writer for ~0.2 s
every ~430 holes (every ~9 s at the bus's 50 holes/s). A block is ~17 KB of log, so the same
stall comes every ~3,700 holes (benchmarks/store_writes.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from appliance.trace import ProgramStep, Trace, TraceMeta

# Sample columns after hole_id, in table order, with their numpy dtypes.
SAMPLE_COLUMNS: tuple[tuple[str, type], ...] = (
    ("idx", np.int32),
    ("depth_mm", np.float64),
    ("torque_a", np.float64),
    ("thrust_a", np.float64),
    ("step", np.int32),
    ("stop_code", np.int64),
    ("torque_empty_a", np.float64),
    ("thrust_empty_a", np.float64),
    ("power_w", np.float64),
    ("rpm", np.float64),
)
OPTIONAL_ARRAYS: tuple[str, ...] = ("torque_empty_a", "thrust_empty_a", "power_w", "rpm")

# TraceMeta fields that live in their own holes columns; the rest goes to the meta JSON.
META_COLUMNS: tuple[str, ...] = (
    "variant", "file_version", "cycle_date", "drill_serial", "head_name",
    "head_global_counter", "head_local_counter",
)


def utcnow() -> datetime:
    """Naive UTC: DuckDB TIMESTAMP columns hold UTC without a zone."""
    return datetime.now(UTC).replace(tzinfo=None)


def iso(value: Any) -> Any:
    """A stored timestamp as ISO 8601 UTC text (other values unchanged)."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(timespec="microseconds") + "Z"
    return value


def dumps(obj: Any) -> str | None:
    """JSON text for a JSON column (None stays SQL NULL)."""
    if obj is None:
        return None
    return json.dumps(obj, default=json_default, sort_keys=True)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def json_default(value: Any) -> Any:
    """What JSON holds of a value json and msgspec do not know (numpy, datetime)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, datetime):
        return iso(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def program_to_json(program: tuple[ProgramStep, ...]) -> str:
    return dumps([asdict(step) for step in program]) or "[]"


def program_from_json(text: str | None) -> tuple[ProgramStep, ...]:
    return tuple(ProgramStep(**step) for step in (loads(text) or []))


def meta_rest(trace: Trace) -> dict[str, Any]:
    """TraceMeta fields without a column of their own, plus which optional arrays exist."""
    m = trace.meta
    return {
        "sample_rate_hz": m.sample_rate_hz,
        "cycle_ok": m.cycle_ok,
        "predrilled": m.predrilled,
        "extra": dict(m.extra),
        "arrays": [name for name in OPTIONAL_ARRAYS if getattr(trace, name) is not None],
    }


def meta_full(row: dict[str, Any]) -> dict[str, Any]:
    """Every TraceMeta field except program, as one JSON-able dict (snapshot meta column)."""
    rest = row["meta"] if isinstance(row["meta"], dict) else loads(row["meta"]) or {}
    out = {name: row.get(name) for name in META_COLUMNS}
    out.update(rest)
    out["source"] = row["source"]
    out["content_hash"] = row["content_hash"]
    return out


def build_meta(fields: dict[str, Any], program: tuple[ProgramStep, ...]) -> TraceMeta:
    """TraceMeta from the hole's columns merged with its meta JSON."""
    return TraceMeta(
        source=fields["source"],
        content_hash=fields["content_hash"],
        variant=fields["variant"],
        file_version=_opt_int(fields.get("file_version")),
        cycle_date=fields.get("cycle_date"),
        sample_rate_hz=float(fields.get("sample_rate_hz") or 100.0),
        drill_serial=fields.get("drill_serial"),
        head_name=fields.get("head_name"),
        head_global_counter=_opt_int(fields.get("head_global_counter")),
        head_local_counter=_opt_int(fields.get("head_local_counter")),
        program=program,
        cycle_ok=fields.get("cycle_ok"),
        predrilled=fields.get("predrilled"),
        extra=dict(fields.get("extra") or {}),
    )


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def samples_table(n: int, columns: dict[str, np.ndarray]) -> pa.Table:
    """Sample columns (idx ... rpm; one missing from `columns` is all NULL) as an Arrow table
    of n rows, zero-copy where possible: the snapshot's per-sample layout."""
    cols: dict[str, pa.Array] = {"idx": pa.array(np.arange(n, dtype=np.int32))}
    for name, dtype in SAMPLE_COLUMNS[1:]:
        arr = columns.get(name)
        if arr is None:
            cols[name] = pa.nulls(n, pa.from_numpy_dtype(dtype))
        else:
            cols[name] = pa.array(np.ascontiguousarray(arr, dtype=dtype))
    return pa.table(cols)


BLOCK_CODEC = "zstd"


@dataclass(frozen=True)
class SampleBlock:
    """One hole's sample columns (idx implied) as one compressed buffer, self-describing:
    `layout` names the columns in the block, in order, with their numpy dtypes."""

    n_samples: int
    layout: str  # e.g. "depth_mm:<f8,torque_a:<f8,...,step:<i4"
    codec: str
    block: bytes


def sample_block(trace: Trace) -> SampleBlock:
    """The trace's sample columns (an absent optional array is left out) as one block."""
    return block_of(trace.n_samples, {name: getattr(trace, name) for name, _ in SAMPLE_COLUMNS[1:]})


def block_of(n: int, columns: dict[str, np.ndarray | None]) -> SampleBlock:
    """Sample columns of n samples (None: absent) as one block, in SAMPLE_COLUMNS order."""
    parts, layout = [], []
    for name, dtype in SAMPLE_COLUMNS[1:]:
        arr = columns.get(name)
        if arr is None:
            continue
        dt = np.dtype(dtype).newbyteorder("<")
        parts.append(np.ascontiguousarray(arr, dtype=dt).tobytes())
        layout.append(f"{name}:{dt.str}")
    # level 1: ~19 KB a hole of 1,800 samples in ~0.5 ms; level 3 saved 2 % for 12 % more time
    block = pa.Codec(BLOCK_CODEC, compression_level=1).compress(b"".join(parts), asbytes=True)
    return SampleBlock(n, ",".join(layout), BLOCK_CODEC, block)


def block_columns(block: SampleBlock) -> dict[str, np.ndarray]:
    """The sample columns a block holds, by name (each a fresh array of its dtype)."""
    fields = [part.split(":", 1) for part in block.layout.split(",") if part]
    dtypes = [(name, np.dtype(dt)) for name, dt in fields]
    size = block.n_samples * sum(dt.itemsize for _, dt in dtypes)
    raw = pa.Codec(block.codec).decompress(block.block, decompressed_size=size, asbytes=True)
    out, at = {}, 0
    for name, dt in dtypes:
        width = block.n_samples * dt.itemsize
        out[name] = np.frombuffer(raw, dtype=dt, count=block.n_samples, offset=at).astype(
            dt.newbyteorder("="))
        at += width
    return out


def trace_from_columns(meta: TraceMeta, columns: dict[str, np.ndarray], arrays: list[str]) -> Trace:
    """Rebuild a Trace from sample columns (already in idx order)."""
    kwargs: dict[str, Any] = {}
    for name, dtype in SAMPLE_COLUMNS[1:]:
        if name in OPTIONAL_ARRAYS and name not in arrays:
            kwargs[name] = None
            continue
        kwargs[name] = plain(columns[name], dtype)
    return Trace(meta=meta, **kwargs)


def plain(values: Any, dtype: type) -> np.ndarray:
    """A numpy array of dtype from a fetched column (masked arrays: NULL -> NaN)."""
    if isinstance(values, np.ma.MaskedArray):
        if np.issubdtype(dtype, np.floating):
            values = values.filled(np.nan)
        else:
            values = values.filled(0)
    return np.asarray(values, dtype=dtype)
