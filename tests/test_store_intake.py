"""Inputs into the store: outcomes per file, parse-ahead thread, failures mid-run."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from test_store_support import make_trace

from appliance.errors import ValidationError
from appliance.ingest.discover import InputResult
from appliance.ingest.fixtures import sample_trace
from appliance.ingest.setitec_writer import write_setitec
from appliance.services import intake
from appliance.store import Store, holes
from appliance.trace import Trace


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "logs"
    root.mkdir()
    for i in range(6):
        (root / f"H_{i}.xls").write_bytes(write_setitec(sample_trace(seed=i), variant="v9"))
    (root / "H_0_again.xls").write_bytes((root / "H_0.xls").read_bytes())
    (root / "zz_bad.xls").write_bytes(b"\x00\x01 not a log")
    return root


@pytest.mark.parametrize(("prefetch", "batch"), [(0, 1), (1, 32), (3, 3)])
def test_outcomes_do_not_depend_on_prefetch_or_batch(tmp_path, folder, prefetch, batch):
    with Store.open(tmp_path / "home") as store:
        seen = []
        report = intake.ingest_paths(store, [folder], lambda k, e: seen.append((k, e)),
                                     prefetch=prefetch, batch=batch)
        assert [Path(e["source"]).name for e in report.ingested] == [
            f"H_{i}.xls" for i in range(6)]
        assert [Path(e["source"]).name for e in report.duplicates] == ["H_0_again.xls"]
        assert [Path(e["source"]).name for e in report.rejected] == ["zz_bad.xls"]
        assert len(seen) == report.n_files == 8
        assert [k for k, _ in seen].count("ingested") == 6  # every file reported as it goes
        assert store.count_holes() == 6
        assert store.quarantined()[0]["size"] == len(b"\x00\x01 not a log")


def test_parser_crash_reaches_the_caller(tmp_path, folder, monkeypatch):
    good = make_trace(42)

    def walk(paths):
        yield InputResult("first.xls", "g", good, None)
        raise RuntimeError("walk broke (injected)")

    monkeypatch.setattr(intake, "iter_inputs", walk)
    with Store.open(tmp_path / "home") as store:
        with pytest.raises(RuntimeError, match="injected"):
            intake.ingest_paths(store, [folder], prefetch=4)
        assert store.count_holes() == 1  # what came before the crash is kept


def test_store_failure_stops_the_parse_thread(tmp_path, folder, monkeypatch):
    before = threading.active_count()

    def fail(con, batch):
        raise OSError("disk full (injected)")

    monkeypatch.setattr(holes, "insert_samples", fail)
    with Store.open(tmp_path / "home") as store:
        with pytest.raises(OSError, match="injected"):
            intake.ingest_paths(store, [folder], prefetch=2)
        assert store.count_holes() == 0
    assert threading.active_count() == before


def test_batch_with_a_bad_hole_stores_the_others(home):
    good = [make_trace(i) for i in range(3)]
    t = make_trace(9)
    empty = Trace(t.meta, t.depth_mm[:0], t.torque_a[:0], t.thrust_a[:0], t.step[:0],
                  t.stop_code[:0])
    with Store.open(home) as store:
        out = store.add_holes([(good[0], "g"), (empty, "g"), (good[1], "g"), (good[0], "g")])
        assert out[0] == (good[0].meta.content_hash[:16], True)
        assert isinstance(out[1], ValidationError) and "no samples" in str(out[1])
        assert out[2][1] is True and out[3] == (out[0][0], False)
        assert store.count_holes() == 2


def test_failure_mid_batch_leaves_none_of_it(home, monkeypatch):
    original = holes.insert_samples

    def write_then_fail(con, batch):
        assert len(batch) == 3  # one insert for the whole batch
        original(con, batch)  # the rows really are written inside the transaction ...
        raise OSError("disk full (injected)")  # ... before it fails

    with Store.open(home) as store:
        monkeypatch.setattr(holes, "insert_samples", write_then_fail)
        with pytest.raises(OSError, match="injected"):
            store.add_holes([(make_trace(i), "g") for i in range(3)])
        with store.cursor() as con:
            assert con.execute("SELECT count(*) FROM traces").fetchone()[0] == 0
        assert store.count_holes() == 0
        monkeypatch.setattr(holes, "insert_samples", original)
        assert [created for _, created in store.add_holes(
            [(make_trace(i), "g") for i in range(3)])] == [True] * 3
