"""Holes and samples in the DuckDB store: round trip, duplicates, atomicity, listing."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_store_support import make_trace

from appliance.errors import NotFoundError, ValidationError
from appliance.points import DepthPoints
from appliance.store import Store, holes
from appliance.trace import Trace


def _count(store: Store, table: str) -> int:
    with store.cursor() as con:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_open_creates_home_and_file(tmp_path):
    home = tmp_path / "a" / "b"
    with Store.open(home) as store:
        assert store.path == home / "appliance.duckdb"
        assert store.list_holes() == []
    assert (home / "appliance.duckdb").is_file()


def test_trace_round_trip_keeps_arrays_and_metadata(home):
    trace = make_trace(1)
    with Store.open(home) as store:
        hole_id, created = store.add_hole(trace, group="tuhh-v4")
        assert created and hole_id == trace.meta.content_hash[:16]
    with Store.open(home) as store:  # from disk, not a cache
        back = store.get_trace(hole_id)
        row = store.get_hole(hole_id)
    assert back.equals(trace)
    assert back.meta == trace.meta
    assert back.step.dtype == np.int32 and back.stop_code.dtype == np.int64
    assert back.rpm is None and back.power_w is not None
    assert row.n_samples == len(trace)
    assert row.depth_min_mm == pytest.approx(trace.depth_range[0])
    assert row.depth_max_mm == pytest.approx(trace.depth_range[1])
    assert row.source_group == "tuhh-v4"
    assert row.head_local_counter == 1 and row.variant == "v9"
    assert back.meta.program[1].feed_mm_rev == float("inf")


def test_optional_arrays_absent_stay_absent(home):
    trace = make_trace(2, with_optional=False)
    with Store.open(home) as store:
        hole_id, _ = store.add_hole(trace)
        back = store.get_trace(hole_id)
    assert back.torque_empty_a is None and back.thrust_empty_a is None and back.power_w is None
    assert back.equals(trace)


def test_nan_samples_survive(home):
    trace = make_trace(3)
    torque = trace.torque_a.copy()
    torque[5] = np.nan
    odd = Trace(trace.meta, trace.depth_mm, torque, trace.thrust_a, trace.step, trace.stop_code)
    with Store.open(home) as store:
        back = store.get_trace(store.add_hole(odd)[0])
    assert np.isnan(back.torque_a[5]) and np.array_equal(back.torque_a[6:], torque[6:])


def test_duplicate_content_writes_nothing(home):
    trace = make_trace(4, source="V4_069.xls")
    copy = make_trace(4, source="V4_070.xls")  # same bytes, other name
    with Store.open(home) as store:
        first = store.add_hole(trace, "edge-cases")
        second = store.add_hole(copy, "edge-cases")
        again = store.add_hole(trace, "edge-cases")
        assert first == (first[0], True)
        assert second == (first[0], False) and again == (first[0], False)
        assert _count(store, "holes") == 1
        assert _count(store, "traces") == 1  # one block of samples, written once
        assert store.get_trace(first[0]).equals(trace)
        # both names lead to the one hole
        assert store.hole_sources(first[0]) == ["V4_069.xls", "V4_070.xls"]
        assert store.find_hole_by_source("V4_070.xls") == first[0]


def test_failure_mid_hole_leaves_nothing_and_store_usable(home, monkeypatch):
    original = holes.insert_samples

    def insert_then_fail(con, batch):
        original(con, batch)  # the samples are written in the transaction
        raise OSError("disk full (injected)")  # ... and then the hole fails

    with Store.open(home) as store:
        monkeypatch.setattr(holes, "insert_samples", insert_then_fail)
        with pytest.raises(OSError, match="injected"):
            store.add_hole(make_trace(5))
        for table in ("holes", "traces", "hole_sources"):
            assert _count(store, table) == 0, table
        monkeypatch.setattr(holes, "insert_samples", original)
        hole_id, created = store.add_hole(make_trace(5))
        assert created
    with Store.open(home) as store:
        assert [h.hole_id for h in store.list_holes()] == [hole_id]
        assert _count(store, "traces") == 1
        assert store.get_trace(hole_id).equals(make_trace(5))


def test_empty_trace_rejected(home):
    t = make_trace(6)
    empty = Trace(t.meta, t.depth_mm[:0], t.torque_a[:0], t.thrust_a[:0], t.step[:0],
                  t.stop_code[:0])
    with Store.open(home) as store, pytest.raises(ValidationError, match="no samples"):
        store.add_hole(empty)


def test_unknown_hole(home):
    with Store.open(home) as store:
        with pytest.raises(NotFoundError, match="ffff"):
            store.get_trace("ffffffffffffffff")
        with pytest.raises(NotFoundError):
            store.get_hole("ffffffffffffffff")


def test_list_holes_filters_and_pages(home):
    with Store.open(home) as store:
        ids = [store.add_hole(make_trace(i))[0] for i in range(10, 16)]
        store.add_label(ids[1], DepthPoints(None, None, None), by="ann")
        store.add_label(ids[3], DepthPoints(None, None, None), by="ann")
        everything = store.list_holes()
        assert [h.hole_id for h in everything] == ids  # ingest order
        labelled = store.list_holes(labelled=True)
        assert [h.hole_id for h in labelled] == [ids[1], ids[3]]
        assert all(h.labelled and h.label is not None and h.label.by == "ann" for h in labelled)
        unlabelled = store.list_holes(labelled=False)
        assert {h.hole_id for h in unlabelled} == set(ids) - {ids[1], ids[3]}
        assert all(not h.labelled and h.label is None for h in unlabelled)
        assert [h.hole_id for h in store.list_holes(limit=2, offset=2)] == ids[2:4]
        assert store.count_holes() == 6 and store.count_holes(labelled=True) == 2
        assert store.list_holes(since="2000-01-01T00:00:00Z") == everything
        assert store.list_holes(since="2999-01-01T00:00:00") == []


def test_find_hole_by_source_rules(home):
    with Store.open(home) as store:
        a = store.add_hole(make_trace(20, source="/data/tuhh-v4/V4_001.xls"), "tuhh-v4")[0]
        b = store.add_hole(make_trace(21, source="/data/tuhh-v5/V4_001.xls"), "tuhh-v5")[0]
        c = store.add_hole(make_trace(22, source="/data/mdb/only.xls"), "mdb")[0]
        assert store.find_hole_by_source("tuhh-v4/V4_001.xls") == a
        assert store.find_hole_by_source("tuhh-v5/V4_001.xls") == b
        assert store.find_hole_by_source("only.xls") == c
        assert store.find_hole_by_source("/data/mdb/only.xls") == c
        assert store.find_hole_by_source(c) == c  # a hole id names itself
        assert store.find_hole_by_source("missing.xls") is None
        with pytest.raises(ValidationError, match="matches 2 holes"):
            store.find_hole_by_source("V4_001.xls")


def test_threads_share_one_store(home):
    traces = [make_trace(100 + i, n=200) for i in range(12)]
    errors: list[BaseException] = []
    with Store.open(home) as store:

        def work(chunk):
            try:
                for t in chunk:
                    hole_id, _ = store.add_hole(t)
                    assert store.get_trace(hole_id).equals(t)
            except BaseException as exc:  # collected for the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(traces[i::3],)) for i in range(3)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == []
        assert store.count_holes() == 12


def test_hole_id_collision_is_refused_not_merged(home):
    a = make_trace(30)
    b0 = make_trace(31)
    other_hash = a.meta.content_hash[:16] + "0" * 48
    b = Trace(replace(b0.meta, content_hash=other_hash), b0.depth_mm, b0.torque_a,
              b0.thrust_a, b0.step, b0.stop_code)
    with Store.open(home) as store:
        hole_id, _ = store.add_hole(a)
        with pytest.raises(ValidationError, match=f"hole id {hole_id} is already used"):
            store.add_hole(b)
        assert store.get_trace(hole_id).equals(a) and _count(store, "traces") == 1


def test_a_trace_no_drilling_unit_could_log_is_refused_whole(tmp_path: Path) -> None:
    trace = make_trace(3)
    depth = trace.depth_mm.copy()
    depth[7] = 1e308
    bad = replace(trace, depth_mm=depth)
    with Store.open(tmp_path / "home") as store:
        with pytest.raises(ValidationError, match=r"depth_mm = 1e\+308 at sample 7"):
            store.add_hole(bad)
        assert store.count_holes() == 0
        store.add_hole(trace)
        assert store.count_holes() == 1


def test_a_damaged_samples_block_is_named_not_misread(home):
    """Bytes of a block that no longer decode, or a codec this release does not know: the
    hole is named and nothing is returned, not an Arrow error or wrong samples."""
    from appliance.errors import StoredDataError

    with Store.open(home) as store:
        damaged, _ = store.add_hole(make_trace(40))
        unknown, _ = store.add_hole(make_trace(41))
        intact, _ = store.add_hole(make_trace(42))
        with store.transaction() as con:
            con.execute("UPDATE traces SET block = 'not zstd'::BLOB WHERE hole_seq = "
                        "(SELECT hole_seq FROM holes WHERE hole_id = ?)", [damaged])
            con.execute("UPDATE traces SET codec = 'brotli9' WHERE hole_seq = "
                        "(SELECT hole_seq FROM holes WHERE hole_id = ?)", [unknown])
        for hole_id in (damaged, unknown):
            with pytest.raises(StoredDataError, match=f"hole {hole_id}: its samples cannot be "
                                                      "read back"):
                store.get_trace(hole_id)
        assert store.get_trace(intact).equals(make_trace(42))
