"""SQL for holes, their samples (one block per hole) and the names they were seen under."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import msgspec
import numpy as np
import pyarrow as pa

from appliance.config import MAX_SAMPLES_PER_HOLE
from appliance.errors import StoredDataError, ValidationError
from appliance.records import Hole, Label
from appliance.store.codec import (
    META_COLUMNS,
    SampleBlock,
    block_columns,
    build_meta,
    dumps,
    iso,
    loads,
    meta_rest,
    program_from_json,
    program_to_json,
    sample_block,
    trace_from_columns,
)
from appliance.store.labels import LATEST_LABELS
from appliance.store.rows import fetch_dicts, fetch_one, one_row
from appliance.trace import Trace

HOLE_ID_LENGTH = 16

_HOLE_COLUMNS = (
    "hole_id", "source", "source_group", "content_hash", *META_COLUMNS, "program", "meta",
    "n_samples", "depth_min", "depth_max", "ingested_at",
)
_HOLES_ARROW = pa.schema([
    ("hole_id", pa.string()), ("source", pa.string()), ("source_group", pa.string()),
    ("content_hash", pa.string()), ("variant", pa.string()), ("file_version", pa.int32()),
    ("cycle_date", pa.string()), ("drill_serial", pa.string()), ("head_name", pa.string()),
    ("head_global_counter", pa.int64()), ("head_local_counter", pa.int64()),
    ("program", pa.string()), ("meta", pa.string()), ("n_samples", pa.int32()),
    ("depth_min", pa.float64()), ("depth_max", pa.float64()),
    ("ingested_at", pa.timestamp("us")), ("hole_seq", pa.int64()),
])
_TRACES_ARROW = pa.schema([
    ("hole_seq", pa.int64()), ("n_samples", pa.int32()), ("layout", pa.string()),
    ("codec", pa.string()), ("block", pa.binary()),
])


def hole_id_for(content_hash: str) -> str:
    return content_hash[:HOLE_ID_LENGTH].lower()


def find_by_hash(con: duckdb.DuckDBPyConnection, content_hash: str) -> str | None:
    row = con.execute(
        "SELECT hole_id FROM holes WHERE content_hash = ?", [content_hash]
    ).fetchone()
    return row[0] if row else None


def check_trace(trace: Trace, max_samples: int = MAX_SAMPLES_PER_HOLE) -> None:
    """Refuse a trace the store must not hold, naming its source and the problem."""
    if trace.n_samples == 0:
        raise ValidationError(f"{trace.meta.source}: the trace has no samples")
    if trace.n_samples > max_samples:
        raise ValidationError(
            f"{trace.meta.source}: the trace has {trace.n_samples:,} samples; a hole may have "
            f"at most {max_samples:,} (max_samples_per_hole in [daemon] of appliance.toml)")
    if len(trace.meta.content_hash or "") < HOLE_ID_LENGTH:
        raise ValidationError(
            f"{trace.meta.source}: the trace has no content hash (sha256 hex) to identify it"
        )
    problem = trace.physical_problem()
    if problem:
        raise ValidationError(f"{trace.meta.source}: {problem}")


@dataclass(frozen=True)
class NewHole:
    hole_id: str
    hole_seq: int  # ingest order; the key of the hole's samples
    trace: Trace
    group: str | None


def stored_hashes(con: duckdb.DuckDBPyConnection, hole_ids: list[str]) -> dict[str, str]:
    """{hole_id: content_hash} of those ids already stored, in one query."""
    rows = con.execute(
        "SELECT hole_id, content_hash FROM holes WHERE hole_id IN (SELECT unnest(?))",
        [hole_ids],
    ).fetchall()
    return dict(rows)


def next_seqs(con: duckdb.DuckDBPyConnection, count: int) -> list[int]:
    rows = con.execute("SELECT nextval('holes_seq') FROM range(?)", [count]).fetchall()
    return [int(r[0]) for r in rows]


def insert_holes(con: duckdb.DuckDBPyConnection, batch: list[NewHole], now: datetime) -> None:
    """The holes' rows, in one insert from an Arrow table."""
    records = []
    for new in batch:
        m, depth = new.trace.meta, new.trace.depth_mm
        finite = depth[np.isfinite(depth)]
        records.append({
            "hole_id": new.hole_id, "source": m.source, "source_group": new.group,
            "content_hash": m.content_hash,
            **{name: getattr(m, name) for name in META_COLUMNS},
            "program": program_to_json(m.program), "meta": dumps(meta_rest(new.trace)),
            "n_samples": new.trace.n_samples,
            "depth_min": float(finite.min()) if finite.size else None,
            "depth_max": float(finite.max()) if finite.size else None,
            "ingested_at": now, "hole_seq": new.hole_seq,
        })
    new_holes = pa.Table.from_pylist(records, schema=_HOLES_ARROW)  # noqa: F841 - scanned below
    names = ", ".join(_HOLES_ARROW.names)
    con.execute(f"INSERT INTO holes ({names}) SELECT {names} FROM new_holes")


def insert_samples(con: duckdb.DuckDBPyConnection, batch: list[NewHole]) -> None:
    """Every hole's samples as one block each, in one insert."""
    blocks = [sample_block(new.trace) for new in batch]
    new_traces = pa.table(  # noqa: F841 - read by DuckDB's replacement scan below
        [[n.hole_seq for n in batch], [b.n_samples for b in blocks], [b.layout for b in blocks],
         [b.codec for b in blocks], [b.block for b in blocks]], schema=_TRACES_ARROW)
    names = ", ".join(_TRACES_ARROW.names)
    con.execute(f"INSERT INTO traces ({names}) SELECT {names} FROM new_traces")


def add_alias(
    con: duckdb.DuckDBPyConnection, hole_id: str, source: str, group: str | None, now: datetime
) -> None:
    """Remember another name the hole's content arrived under (not its first one)."""
    con.execute(
        """INSERT INTO hole_sources
           SELECT ?, ?, ?, ?
           WHERE NOT EXISTS (SELECT 1 FROM holes WHERE hole_id = $1 AND source = $2)
           ON CONFLICT DO NOTHING""",
        [hole_id, source, group, now],
    )


def get_row(con: duckdb.DuckDBPyConnection, hole_id: str) -> dict[str, Any] | None:
    return fetch_one(
        con,
        f"SELECT {', '.join(_HOLE_COLUMNS)}, hole_seq FROM holes WHERE hole_id = ?",
        [hole_id],
        ("program", "meta"),
    )


def load_trace(con: duckdb.DuckDBPyConnection, row: dict[str, Any]) -> Trace:
    """The hole's Trace (row from get_row): samples by hole_seq, metadata from the row."""
    found = con.execute(
        "SELECT n_samples, layout, codec, block FROM traces WHERE hole_seq = ?",
        [row["hole_seq"]],
    ).fetchone()
    if found is None:
        raise StoredDataError(f"hole {row['hole_id']} has no samples in the store")
    return trace_from_row(row, _columns(row["hole_id"], SampleBlock(*found)))


def columns_by_hole(con: duckdb.DuckDBPyConnection, hole_ids: list[str]
                    ) -> dict[str, dict[str, np.ndarray]]:
    """{hole_id: its sample columns} of these holes, in one query."""
    rows = con.execute(
        """SELECT h.hole_id, t.n_samples, t.layout, t.codec, t.block
           FROM traces t JOIN holes h USING (hole_seq)
           WHERE h.hole_id IN (SELECT unnest(?))""", [hole_ids],
    ).fetchall()
    return {hole_id: _columns(hole_id, SampleBlock(*rest)) for hole_id, *rest in rows}


def _columns(hole_id: str, block: SampleBlock) -> dict[str, np.ndarray]:
    try:
        return block_columns(block)
    except (pa.ArrowException, OSError, ValueError, TypeError) as exc:  # Arrow says OSError
        raise StoredDataError(
            f"hole {hole_id}: its samples cannot be read back from the store ({block.codec} "
            f"block of {len(block.block):,} bytes for {block.n_samples:,} samples: {exc}); "
            "restore the store from a backup") from None


def trace_from_row(row: dict[str, Any], columns: dict[str, np.ndarray]) -> Trace:
    meta_json = row["meta"] if isinstance(row["meta"], dict) else loads(row["meta"]) or {}
    program = row["program"]
    program = program_from_json(program if isinstance(program, str) else dumps(program))
    meta = build_meta({**row, **meta_json}, program)
    return trace_from_columns(meta, columns, meta_json.get("arrays", []))


# A hole's columns as appliance.records.Hole names them (h: holes, l: its latest label).
_HOLE_FIELDS = """
    h.hole_id AS id, h.source, h.source_group, h.variant, h.file_version, h.cycle_date,
    h.drill_serial, h.head_name, h.head_local_counter, h.n_samples,
    h.depth_min AS depth_min_mm, h.depth_max AS depth_max_mm, h.ingested_at,
    l.label_id IS NOT NULL AS labelled, l.label_id, l.entry_mm, l.transition_mm, l.exit_mm,
    l."by" AS label_by, l."at" AS label_at, l.origin AS label_origin
"""


def list_rows(
    con: duckdb.DuckDBPyConnection,
    labelled: bool | None = None,
    since: datetime | str | None = None,
    limit: int | None = None,
    offset: int = 0,
    ids: list[str] | None = None,
) -> list[Hole]:
    """Holes in ingest order with their latest label (ids: only those)."""
    where, params = _filters(labelled, since, ids)
    sql = f"""
        SELECT {_HOLE_FIELDS}
        FROM holes h LEFT JOIN ({LATEST_LABELS}) l USING (hole_id)
        {where}
        ORDER BY h.hole_seq
    """
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    if offset:
        sql += " OFFSET ?"
        params.append(int(offset))
    rows = fetch_dicts(con, sql, params)
    for row in rows:
        row["label"] = _label_of(row)
    # one call checks and builds every record (a Label, already built, is taken as it is)
    holes: list[Hole] = msgspec.convert(rows, list[Hole])
    return holes


def _label_of(row: dict[str, Any]) -> Label | None:
    """The latest label carried by a listing row (its label_* columns), or None."""
    if row["label_id"] is None:
        return None
    return Label(label_id=row["label_id"], hole_id=row["id"], entry_mm=row["entry_mm"],
                 transition_mm=row["transition_mm"], exit_mm=row["exit_mm"],
                 by=row["label_by"], at=row["label_at"], origin=row["label_origin"])


def list_ids(
    con: duckdb.DuckDBPyConnection,
    labelled: bool | None = None,
    since: datetime | str | None = None,
) -> list[str]:
    """The ids list_rows would list, in the same order, without building its rows: a hole
    is labelled when it has any label, which needs no latest-label window."""
    clauses, params = _since(since)
    if labelled is not None:
        clauses.append(("" if labelled else "NOT ")
                       + "EXISTS (SELECT 1 FROM labels l WHERE l.hole_id = h.hole_id)")
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    rows = con.execute(f"SELECT h.hole_id FROM holes h {where} ORDER BY h.hole_seq",
                       params).fetchall()
    return [r[0] for r in rows]


def count_rows(
    con: duckdb.DuckDBPyConnection,
    labelled: bool | None = None,
    since: datetime | str | None = None,
) -> int:
    where, params = _filters(labelled, since)
    sql = f"""SELECT count(*) FROM holes h LEFT JOIN ({LATEST_LABELS}) l USING (hole_id)
              {where}"""
    return int(one_row(con, sql, params)[0])


def _filters(labelled: bool | None, since: datetime | str | None,
             ids: list[str] | None = None) -> tuple[str, list[Any]]:
    clauses, params = _since(since)
    if labelled is True:
        clauses.append("l.label_id IS NOT NULL")
    elif labelled is False:
        clauses.append("l.label_id IS NULL")
    if ids is not None:
        clauses.append("h.hole_id IN (SELECT unnest(?))")
        params.append(ids)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def _since(since: datetime | str | None) -> tuple[list[str], list[Any]]:
    if since is None:
        return [], []
    return ["h.ingested_at >= CAST(? AS TIMESTAMP)"], [_timestamp_param(since)]


def _timestamp_param(value: datetime | str) -> str:
    text = iso(value) if isinstance(value, datetime) else str(value)
    return text[:-1] if text.endswith("Z") else text


# Every name of every hole: its first source plus the aliases it was seen under since.
_ALL_SOURCES = """
    SELECT hole_id, source, source_group, ingested_at AS seen_at FROM holes
    UNION ALL
    SELECT hole_id, source, source_group, seen_at FROM hole_sources
"""


def sources(con: duckdb.DuckDBPyConnection, hole_id: str) -> list[str]:
    rows = con.execute(
        f"SELECT source FROM ({_ALL_SOURCES}) WHERE hole_id = ? ORDER BY seen_at, source",
        [hole_id],
    ).fetchall()
    return [r[0] for r in rows]


class SourceIndex:
    """Finds holes by the name of a file they came from.

    A key matches, in this order of preference: a hole id; the source as stored, or a
    path ending in it / it ending in the key (a path relative to an ingest root), or
    `group/file`; then the bare file name. A tier that yields one hole wins; a tier with
    several is ambiguous; an empty tier falls through to the next.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._rows = con.execute(
            f"SELECT hole_id, source, source_group FROM ({_ALL_SOURCES})"
        ).fetchall()
        self._ids = {r[0] for r in self._rows}
        self._suffixes: dict[str, set[str]] | None = None
        self._by_name: dict[str, set[str]] = {}
        for hole_id, source, _group in self._rows:
            self._by_name.setdefault(_basename(source), set()).add(hole_id)

    def lookup(self, key: str) -> list[str]:
        """Hole ids the key names (empty: unknown; several: ambiguous)."""
        key = _normal(key)
        if not key:
            return []
        if key.lower() in self._ids:
            return [key.lower()]
        tier = set()
        for hole_id, source, group in self._rows:
            src = _normal(source)
            if (src == key or src.endswith("/" + key)
                    or ("/" in src and key.endswith("/" + src))
                    or (group and f"{group}/{_basename(src)}" == key)):
                tier.add(hole_id)
        if tier:
            return sorted(tier)
        return sorted(self._by_name.get(_basename(key), set()))

    def shortest_name(self, source: str, group: str | None = None) -> str:
        """The shortest `folder/.../file` ending of source that names only its hole.

        What a labels export writes: portable across machines (no absolute paths), like
        the paths of shared/data/setitec/labels.csv, and found again by lookup.
        """
        if self._suffixes is None:
            self._suffixes = {}
            for hole_id, src, grp in self._rows:
                parts = _as_path(src, grp).split("/")
                for k in range(1, len(parts) + 1):
                    self._suffixes.setdefault("/".join(parts[-k:]), set()).add(hole_id)
        parts = _as_path(source, group).split("/")
        for k in range(min(2, len(parts)), len(parts) + 1):
            candidate = "/".join(parts[-k:])
            if len(self._suffixes.get(candidate, ())) == 1:
                return candidate
        return _normal(source)


def _as_path(source: str, group: str | None) -> str:
    """The source as a path; a bare file name is placed in its group's folder."""
    src = _normal(source).lstrip("/")
    return f"{group}/{src}" if group and "/" not in src else src


def _normal(path: str) -> str:
    path = path.strip().replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path


def _basename(path: str) -> str:
    return posixpath.basename(_normal(path))
