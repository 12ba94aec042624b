"""Migrations (from nothing, from an older file, refusing a newer one) and the file lock."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import duckdb
import numpy as np
import pytest
from sample_rows import insert_sample_rows
from test_store_support import make_trace

from appliance.errors import NotFoundError, StoreLockedError
from appliance.points import DepthPoints
from appliance.store import SchemaError, SchemaTooNewError, Store, StoreOpenError, schema
from appliance.store.codec import SAMPLE_COLUMNS
from appliance.store.rows import one_row
from appliance.trace import Trace


def _version(path) -> int:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return schema.current_version(con)
    finally:
        con.close()


def test_fresh_file_gets_every_migration(home):
    with Store.open(home) as store:
        path = store.path
        with store.cursor() as con:
            tables = {r[0] for r in con.execute(
                "SELECT table_name FROM information_schema.tables").fetchall()}
    assert {"holes", "traces", "labels", "predictions", "models", "activations", "jobs",
            "audit", "quarantine", "api_keys", "schema_version", "hole_sources"} <= tables
    assert _version(path) == len(schema.MIGRATIONS)
    with Store.open(home) as store:  # reopening applies nothing twice
        with store.cursor() as con:
            assert con.execute("SELECT count(*) FROM schema_version").fetchone()[0] == len(
                schema.MIGRATIONS)


def test_empty_existing_file_is_migrated(home):
    duckdb.connect(str(home / "appliance.duckdb")).close()  # a file with no tables at all
    with Store.open(home) as store:
        assert store.list_holes() == []
    assert _version(home / "appliance.duckdb") == len(schema.MIGRATIONS)


def test_older_file_is_migrated_and_keeps_its_data(home, monkeypatch):
    trace = make_trace(1, source="/in/tuhh-v4/V4_069.xls")
    hole_id = trace.meta.content_hash[:16]
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
    with Store.open(home) as old:
        # a version-1 store: no hole_sources yet, so write the hole by hand as v1 code did
        with old.transaction() as con:
            from appliance.store import holes
            from appliance.store.codec import utcnow
            batch = [holes.NewHole(hole_id, holes.next_seqs(con, 1)[0], trace, "tuhh-v4")]
            holes.insert_holes(con, batch, utcnow())
            insert_sample_rows(con, batch)
            con.execute(
                """INSERT INTO predictions (hole_id, estimator, points, created_at)
                   VALUES (?, 'heuristic', '{"entry_mm": 2.0}', now())""", [hole_id]
            )
        with old.cursor() as con:  # v1 had neither the names table nor shadow predictions
            names = {r[0] for r in con.execute(
                "SELECT table_name FROM information_schema.tables").fetchall()}
            assert "hole_sources" not in names
    assert _version(home / "appliance.duckdb") == 1
    monkeypatch.undo()

    with Store.open(home) as store:
        assert _count_versions(store) == len(schema.MIGRATIONS)
        assert store.get_trace(hole_id).equals(trace)
        assert store.find_hole_by_source("V4_069.xls") == hole_id
        # v2 columns and tables work on the migrated data
        assert [p.shadow for p in store.predictions(hole_id)] == [False]
        copy = make_trace(1, source="/in/edge-cases/V4_070.xls")
        assert store.add_hole(copy, "edge-cases") == (hole_id, False)
        assert store.find_hole_by_source("V4_070.xls") == hole_id
        lo, hi = store.get_hole(hole_id).depth_min_mm, trace.depth_range[1]
        store.add_label(hole_id, DepthPoints(lo + 1, None, hi - 1), by="ann")


def test_sample_rows_become_one_block_per_hole(home, monkeypatch):
    """v6: holes of any length, with and without the optional arrays, NaN kept, across the
    migration's chunks of holes; the blocks decode to the very traces stored as rows."""
    from appliance.store import holes
    from appliance.store.codec import utcnow
    traces = [make_trace(i, n=50 + 37 * i, with_optional=i % 3 != 0) for i in range(300)]
    t7 = traces[7]
    torque = t7.torque_a.copy()
    torque[3] = np.nan
    traces[7] = Trace(t7.meta, t7.depth_mm, torque, t7.thrust_a, t7.step, t7.stop_code,
                      t7.torque_empty_a, t7.thrust_empty_a, t7.power_w, t7.rpm)
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:5])
    with Store.open(home) as old, old.transaction() as con:
        seqs = holes.next_seqs(con, len(traces))
        batch = [holes.NewHole(t.meta.content_hash[:16], q, t, None)
                 for t, q in zip(traces, seqs, strict=True)]
        holes.insert_holes(con, batch, utcnow())
        insert_sample_rows(con, batch)
    monkeypatch.undo()
    with Store.open(home) as store:
        for new in batch:
            back = store.get_trace(new.hole_id)
            for name, _ in SAMPLE_COLUMNS[1:]:
                a, b = getattr(back, name), getattr(new.trace, name)
                assert (a is None) == (b is None) and (a is None or (
                    a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True))), name
        with store.cursor() as con:
            names = {r[0] for r in con.execute(
                "SELECT table_name FROM information_schema.tables").fetchall()}
            assert con.execute("SELECT count(*) FROM traces").fetchone()[0] == len(traces)
        assert "samples" not in names
        assert np.isnan(store.get_trace(batch[7].hole_id).torque_a[3])
        assert store.get_trace(batch[0].hole_id).power_w is None


def _count_versions(store: Store) -> int:
    with store.cursor() as con:
        return schema.current_version(con)


def test_failed_migration_rolls_back(home, monkeypatch):
    broken = [*schema.MIGRATIONS, ["CREATE TABLE extra (x INTEGER)", "SELECT * FROM nowhere"]]
    with Store.open(home):
        pass
    monkeypatch.setattr(schema, "MIGRATIONS", broken)
    with pytest.raises(duckdb.CatalogException):
        Store.open(home)
    monkeypatch.undo()
    assert _version(home / "appliance.duckdb") == len(schema.MIGRATIONS)
    with Store.open(home) as store, store.cursor() as con:
        tables = {r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables").fetchall()}
    assert "extra" not in tables


def test_newer_file_is_refused(home):
    with Store.open(home):
        pass
    con = duckdb.connect(str(home / "appliance.duckdb"))
    con.execute("INSERT INTO schema_version VALUES (99, now())")
    con.close()
    with pytest.raises(SchemaTooNewError, match="schema version 99 .* newer release"):
        Store.open(home)


def test_read_only_open(home):
    with pytest.raises(NotFoundError, match="no appliance store"):
        Store.open(home, read_only=True)
    with Store.open(home) as store:
        hole_id, _ = store.add_hole(make_trace(2))
    with Store.open(home, read_only=True) as store:
        assert store.get_trace(hole_id).n_samples == 400
        with pytest.raises(duckdb.Error):
            store.add_hole(make_trace(3))


def test_read_only_refuses_to_open_an_old_file(home, monkeypatch):
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
    with Store.open(home):
        pass
    monkeypatch.undo()
    with pytest.raises(SchemaError, match="open it once read-write"):
        Store.open(home, read_only=True)


HOLDER = textwrap.dedent("""
    import sys, time
    from appliance.store import Store
    store = Store.open(sys.argv[1])
    print("holding", flush=True)
    sys.stdin.readline()
""")


def test_lock_held_by_another_process_gives_one_clear_line(home):
    with Store.open(home):
        pass
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(home)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        for read_only in (False, True):
            with pytest.raises(StoreLockedError) as info:
                Store.open(home, read_only=read_only)
            message = str(info.value)
            assert "\n" not in message
            assert str(home / "appliance.duckdb") in message
            assert f"process {holder.pid}" in message
            assert "appliance serve" in message and "stop it" in message
    finally:
        holder.communicate("\n", timeout=30)
    with Store.open(home) as store:  # free again once the holder is gone
        assert store.list_holes() == []


def test_unreadable_store_file_is_a_clear_error(home, tmp_path):
    (home / "appliance.duckdb").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreOpenError, match="cannot open the store .*appliance.duckdb"):
        Store.open(home)
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    with pytest.raises(StoreOpenError, match="is a file, not a folder"):
        Store.open(a_file)


def test_one_row_gives_the_row_or_names_the_statement(tmp_path):
    con = duckdb.connect(str(tmp_path / "rows.duckdb"))
    try:
        assert one_row(con, "SELECT count(*), max(x) FROM range(3) t(x)") == (3, 2)
        with pytest.raises(RuntimeError, match="expected one row, got none: SELECT"):
            one_row(con, "SELECT 1 WHERE false")
    finally:
        con.close()
