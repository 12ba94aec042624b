"""The store's schema as ordered forward migrations.

MIGRATIONS[i] takes a file from version i to version i + 1. Never edit a step that has
shipped: add a new one. Opening a file applies the missing steps in one transaction;
a file written by newer code (higher version) is refused rather than misread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import duckdb
import numpy as np
import pyarrow as pa

from appliance.errors import ApplianceError
from appliance.store.codec import OPTIONAL_ARRAYS, SAMPLE_COLUMNS, block_of, plain, utcnow
from appliance.store.rows import one_row

log = logging.getLogger("appliance.store")

# a migration step: SQL, or Python for what SQL cannot do (re-encoding stored data)
Step = str | Callable[[duckdb.DuckDBPyConnection], None]


class SchemaError(ApplianceError):
    """The DuckDB file's schema cannot be used as it is."""


class SchemaTooNewError(SchemaError):
    """The DuckDB file was written by a newer version of the appliance."""


_V1 = [
    "CREATE SEQUENCE holes_seq START 1",
    # hole_seq: ingest order. Samples carry it too so that one hole's rows, appended
    # together, are found through the row groups' min/max (zone maps) instead of a scan.
    """CREATE TABLE holes (
        hole_id VARCHAR PRIMARY KEY,
        hole_seq BIGINT NOT NULL DEFAULT nextval('holes_seq'),
        source VARCHAR NOT NULL,
        source_group VARCHAR,
        content_hash VARCHAR NOT NULL UNIQUE,
        variant VARCHAR NOT NULL,
        file_version INTEGER,
        cycle_date VARCHAR,
        drill_serial VARCHAR,
        head_name VARCHAR,
        head_global_counter BIGINT,
        head_local_counter BIGINT,
        program JSON,
        meta JSON,
        n_samples INTEGER NOT NULL,
        depth_min DOUBLE,
        depth_max DOUBLE,
        ingested_at TIMESTAMP NOT NULL
    )""",
    # No index: samples are written in bulk and read a whole hole at a time by hole_seq.
    """CREATE TABLE samples (
        hole_id VARCHAR NOT NULL,
        hole_seq BIGINT NOT NULL,
        idx INTEGER NOT NULL,
        depth_mm DOUBLE,
        torque_a DOUBLE,
        thrust_a DOUBLE,
        step INTEGER,
        stop_code BIGINT,
        torque_empty_a DOUBLE,
        thrust_empty_a DOUBLE,
        power_w DOUBLE,
        rpm DOUBLE
    )""",
    "CREATE SEQUENCE labels_seq START 1",
    """CREATE TABLE labels (
        label_id BIGINT PRIMARY KEY DEFAULT nextval('labels_seq'),
        hole_id VARCHAR NOT NULL,
        entry_mm DOUBLE,
        transition_mm DOUBLE,
        exit_mm DOUBLE,
        "by" VARCHAR NOT NULL,
        "at" TIMESTAMP NOT NULL,
        origin VARCHAR NOT NULL CHECK (origin IN ('operator', 'import', 'auto')),
        from_estimate JSON,
        detail JSON
    )""",
    "CREATE SEQUENCE predictions_seq START 1",
    """CREATE TABLE predictions (
        prediction_id BIGINT PRIMARY KEY DEFAULT nextval('predictions_seq'),
        hole_id VARCHAR NOT NULL,
        model_version VARCHAR,
        estimator VARCHAR NOT NULL,
        points JSON NOT NULL,
        spread JSON,
        presence JSON,
        created_at TIMESTAMP NOT NULL
    )""",
    """CREATE TABLE models (
        version VARCHAR PRIMARY KEY,
        parent VARCHAR,
        architecture VARCHAR,
        path VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL,
        status VARCHAR NOT NULL
            CHECK (status IN ('candidate', 'active', 'retired', 'rejected')),
        gate_report JSON,
        metrics JSON,
        dataset_hash VARCHAR,
        manifest JSON
    )""",
    "CREATE SEQUENCE activations_seq START 1",
    """CREATE TABLE activations (
        activation_id BIGINT PRIMARY KEY DEFAULT nextval('activations_seq'),
        "at" TIMESTAMP NOT NULL,
        version VARCHAR NOT NULL,
        previous_version VARCHAR,
        action VARCHAR NOT NULL CHECK (action IN ('activate', 'rollback', 'auto-rollback')),
        actor VARCHAR NOT NULL,
        reason VARCHAR
    )""",
    """CREATE TABLE jobs (
        job_id VARCHAR PRIMARY KEY,
        kind VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        params JSON,
        progress JSON,
        created_at TIMESTAMP NOT NULL,
        started_at TIMESTAMP,
        finished_at TIMESTAMP,
        error VARCHAR,
        candidate_version VARCHAR,
        log_tail VARCHAR
    )""",
    "CREATE SEQUENCE audit_seq START 1",
    """CREATE TABLE audit (
        audit_id BIGINT PRIMARY KEY DEFAULT nextval('audit_seq'),
        "at" TIMESTAMP NOT NULL,
        actor VARCHAR NOT NULL,
        action VARCHAR NOT NULL,
        subject VARCHAR,
        detail JSON
    )""",
    "CREATE SEQUENCE quarantine_seq START 1",
    """CREATE TABLE quarantine (
        quarantine_id BIGINT PRIMARY KEY DEFAULT nextval('quarantine_seq'),
        "at" TIMESTAMP NOT NULL,
        source VARCHAR NOT NULL,
        content_hash VARCHAR,
        error VARCHAR NOT NULL,
        size BIGINT
    )""",
    """CREATE TABLE api_keys (
        name VARCHAR PRIMARY KEY,
        key_hash VARCHAR NOT NULL UNIQUE,
        created_at TIMESTAMP NOT NULL
    )""",
]

# v2: the other names a hole's content arrived under (byte-identical copies such as
# V4_069/V4_070 are one hole, but labels and operators refer to either name; the first
# name stays in holes.source); shadow predictions of a candidate model.
_V2 = [
    """CREATE TABLE hole_sources (
        hole_id VARCHAR NOT NULL,
        source VARCHAR NOT NULL,
        source_group VARCHAR,
        seen_at TIMESTAMP NOT NULL,
        PRIMARY KEY (hole_id, source)
    )""",
    "ALTER TABLE predictions ADD COLUMN shadow BOOLEAN DEFAULT false",
]

# v3: the rig's MQTT bus. Every message is stored before the broker hears it was received
# (so a crash loses nothing and a redelivery is recognised by its digest); a hole's messages
# wait here until they pair, and bus_holes is the outbox of answers not yet acknowledged by
# the broker. No indexes: DuckDB checks them eagerly on UPDATE, and the tables stay small
# (payloads are dropped once their hole is stored).
_V3 = [
    "CREATE SEQUENCE bus_messages_seq START 1",
    """CREATE TABLE bus_messages (
        message_id BIGINT NOT NULL DEFAULT nextval('bus_messages_seq'),
        received_at TIMESTAMP NOT NULL,
        topic VARCHAR NOT NULL,
        digest VARCHAR NOT NULL,
        kind VARCHAR,
        toolbox VARCHAR,
        tool VARCHAR,
        result_id VARCHAR,
        stamp VARCHAR,
        machine_id VARCHAR,
        head_id VARCHAR,
        payload BLOB,
        size BIGINT NOT NULL,
        state VARCHAR NOT NULL
            CHECK (state IN ('waiting', 'paired', 'quarantined', 'expired')),
        hole_key VARCHAR,
        reason VARCHAR
    )""",
    """CREATE TABLE bus_holes (
        hole_key VARCHAR NOT NULL,
        toolbox VARCHAR NOT NULL,
        tool VARCHAR NOT NULL,
        result_id VARCHAR NOT NULL,
        stamp VARCHAR,
        machine_id VARCHAR,
        head_id VARCHAR,
        hole_id VARCHAR,
        error VARCHAR,
        created_at TIMESTAMP NOT NULL,
        published_at TIMESTAMP
    )""",
]

# v4: what the drift monitor saw, in arrival order: each new hole's signals, each operator
# confirmation's residuals, each reset. The monitor keeps no state of its own: the daemon
# replays these at start (thousands of events per second).
_V4 = [
    "CREATE SEQUENCE drift_events_seq START 1",
    """CREATE TABLE drift_events (
        event_id BIGINT NOT NULL DEFAULT nextval('drift_events_seq'),
        "at" TIMESTAMP NOT NULL,
        drill VARCHAR NOT NULL,
        kind VARCHAR NOT NULL CHECK (kind IN ('hole', 'residuals', 'reset')),
        hole_id VARCHAR,
        signals VARCHAR
    )""",
]

# v5: roles on API keys. Keys from before could do anything, so they become admin keys.
_V5 = [
    "ALTER TABLE api_keys ADD COLUMN role VARCHAR DEFAULT 'admin'",
]


def _samples_to_blocks(con: duckdb.DuckDBPyConnection) -> None:
    """v6: each hole's sample rows become its block (codec.block_of), a few hundred holes per
    query so that a large store converts in bounded memory."""
    seqs = [int(r[0]) for r in con.execute(
        "SELECT DISTINCT hole_seq FROM samples ORDER BY 1").fetchall()]
    if seqs:  # ~1 ms a hole: a large store's first start after the upgrade takes minutes
        log.info("store schema v6: rewriting the samples of %d holes as one block each",
                 len(seqs))
    names = [name for name, _ in SAMPLE_COLUMNS[1:]]
    dtypes = dict(SAMPLE_COLUMNS)
    for at in range(0, len(seqs), 256):
        chunk = seqs[at:at + 256]
        cols = con.execute(
            f"SELECT hole_seq, {', '.join(names)} FROM samples "
            "WHERE hole_seq BETWEEN ? AND ? ORDER BY hole_seq, idx", [chunk[0], chunk[-1]],
        ).fetchnumpy()
        hole_seq = np.asarray(cols["hole_seq"])
        bounds = np.concatenate([[0], np.flatnonzero(np.diff(hole_seq)) + 1, [len(hole_seq)]])
        rows = []
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            part: dict[str, np.ndarray | None] = {}
            for name in names:
                values = cols[name][a:b]
                absent = np.ma.getmaskarray(values).all() and name in OPTIONAL_ARRAYS
                part[name] = None if absent else plain(values, dtypes[name])
            block = block_of(int(b - a), part)
            rows.append((int(hole_seq[a]), block.n_samples, block.layout, block.codec,
                         block.block))
        converted = pa.table(  # noqa: F841 - read by DuckDB's replacement scan below
            list(map(list, zip(*rows, strict=True))),
            names=["hole_seq", "n_samples", "layout", "codec", "block"])
        con.execute("INSERT INTO traces SELECT * FROM converted")


# v6: a hole's samples as one compressed block instead of a row each (codec.SampleBlock says
# why: the bus's commits stalled on checkpointing sample rows).
_V6: list[Step] = [
    """CREATE TABLE traces (
        hole_seq BIGINT NOT NULL,
        n_samples INTEGER NOT NULL,
        layout VARCHAR NOT NULL,
        codec VARCHAR NOT NULL,
        block BLOB NOT NULL
    )""",
    _samples_to_blocks,
    "DROP TABLE samples",
]

MIGRATIONS: list[Sequence[Step]] = [_V1, _V2, _V3, _V4, _V5, _V6]


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    exists = one_row(
        con, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
    )[0]
    if not exists:
        return 0
    row = one_row(con, "SELECT max(version) FROM schema_version")
    return int(row[0] or 0)


def migrate(con: duckdb.DuckDBPyConnection, path: str, read_only: bool = False) -> int:
    """Bring the file at path up to len(MIGRATIONS); returns the version it is at."""
    target = len(MIGRATIONS)
    found = current_version(con)
    if found > target:
        raise SchemaTooNewError(
            f"{path} has schema version {found} but this appliance knows only up to {target}: "
            "it was written by a newer release; upgrade the appliance to open it"
        )
    if found == target:
        return found
    if read_only:
        raise SchemaError(
            f"{path} has schema version {found}, older than {target}: open it once read-write "
            "(e.g. `appliance holes`) to migrate it"
        )
    con.begin()
    try:
        if found == 0:
            con.execute(
                "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMP)"
            )
        for version in range(found + 1, target + 1):
            for step in MIGRATIONS[version - 1]:
                if isinstance(step, str):
                    con.execute(step)
                else:
                    step(con)
            con.execute("INSERT INTO schema_version VALUES (?, ?)", [version, utcnow()])
        con.commit()
    except BaseException:
        con.rollback()
        raise
    return target
