"""Dataset snapshots: round trip, exam exclusion, tamper detection; the exam set."""

from __future__ import annotations

import json

import pytest
from test_store_support import make_trace

from appliance.errors import NotFoundError, ValidationError
from appliance.points import DepthPoints
from appliance.store import Store, is_exam
from appliance.store.snapshot import (
    HOLES_FILE,
    SAMPLES_FILE,
    exam_set,
    export_dataset,
    read_manifest,
    read_snapshot,
)


def _label_all(store: Store, ids: list[str], by: str = "ann") -> dict[str, DepthPoints]:
    out = {}
    for k, hole_id in enumerate(ids):
        row = store.get_hole(hole_id)
        lo, hi = row.depth_min_mm, row.depth_max_mm
        pts = DepthPoints(lo + 0.5, None if k % 3 == 0 else (lo + hi) / 2, hi - 0.5)
        store.add_label(hole_id, pts, by=by)
        out[hole_id] = pts
    return out


@pytest.fixture
def filled(home):
    """40 holes, 30 of them labelled (one relabelled), in two source groups."""
    with Store.open(home) as store:
        ids = [store.add_hole(make_trace(i, n=150 + i), f"group-{i % 2}")[0] for i in range(40)]
        labels = _label_all(store, ids[:30])
        row = store.get_hole(ids[0])
        newer = DepthPoints(row.depth_min_mm + 0.7, None, row.depth_max_mm - 0.7)
        store.add_label(ids[0], newer, by="bob")
        labels[ids[0]] = newer
        yield store, ids, labels


def test_is_exam_is_stable_and_near_the_share():
    ids = [f"{i:016x}" for i in range(5000)]
    members = [h for h in ids if is_exam(h)]
    assert 0.18 < len(members) / len(ids) < 0.22
    assert members == [h for h in ids if is_exam(h)]
    assert [h for h in ids if is_exam(h, 0.0)] == []
    assert len([h for h in ids if is_exam(h, 1.0)]) == 5000
    with pytest.raises(ValueError):
        is_exam("x", 1.5)


def test_snapshot_round_trip_excludes_exam_and_unlabelled(filled, tmp_path):
    store, ids, labels = filled
    manifest = export_dataset(store, tmp_path / "snap")
    exam_ids = {h for h in labels if store.is_exam(h)}
    assert exam_ids, "fixture should put at least one labelled hole in the exam set"
    expected = sorted(set(labels) - exam_ids)

    holes = read_snapshot(tmp_path / "snap")
    assert [h.hole_id for h in holes] == expected
    assert manifest["n_holes"] == len(expected)
    assert manifest["n_exam_excluded"] == len(exam_ids)
    assert manifest["n_samples"] == sum(len(h.trace) for h in holes)
    for h in holes:
        original = store.get_trace(h.hole_id)
        assert h.trace.equals(original) and h.trace.meta == original.meta
        assert h.label == labels[h.hole_id]  # the latest label
        assert h.group == store.get_hole(h.hole_id).source_group
    on_disk = json.loads((tmp_path / "snap" / "manifest.json").read_text())
    assert on_disk == manifest
    assert sorted(p.name for p in (tmp_path / "snap").iterdir()) == [
        "holes.parquet", "manifest.json", "samples.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "snap"]  # no temp dir left


def test_exam_set_is_the_complement(filled):
    store, ids, labels = filled
    exam = exam_set(store)
    assert {h.hole_id for h in exam} == {h for h in labels if store.is_exam(h)}
    for h in exam:
        assert h.label == labels[h.hole_id]
        assert h.trace.equals(store.get_trace(h.hole_id))


def test_same_data_same_content_hash(filled, tmp_path):
    store, ids, labels = filled
    a = export_dataset(store, tmp_path / "a")
    b = export_dataset(store, tmp_path / "b")
    assert a["content_hash"] == b["content_hash"]
    row = store.get_hole(ids[1])
    store.add_label(ids[1], DepthPoints(row.depth_min_mm + 0.9, None, None), by="carl")
    c = export_dataset(store, tmp_path / "c")
    assert c["content_hash"] != a["content_hash"] or store.is_exam(ids[1])


def test_tampered_or_missing_files_are_refused(filled, tmp_path):
    store, ids, labels = filled
    export_dataset(store, tmp_path / "snap")
    samples = tmp_path / "snap" / SAMPLES_FILE
    data = bytearray(samples.read_bytes())
    data[len(data) // 2] ^= 0xFF
    samples.write_bytes(bytes(data))
    with pytest.raises(ValidationError, match="samples.parquet: sha256 .* does not match"):
        read_snapshot(tmp_path / "snap")
    (tmp_path / "snap" / HOLES_FILE).unlink()
    with pytest.raises(ValidationError, match="holes.parquet is missing"):
        read_snapshot(tmp_path / "snap")
    with pytest.raises(NotFoundError, match="manifest.json missing"):
        read_snapshot(tmp_path)


@pytest.mark.parametrize("text", ["[1, 2]", '"snapshot"', "null"])
def test_a_manifest_that_is_not_an_object_is_refused(tmp_path, text):
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(ValidationError, match=r"manifest.json: manifest is \w+, not an object"):
        read_manifest(tmp_path)


def test_export_refuses_a_non_empty_folder(filled, tmp_path):
    store, _, _ = filled
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ValidationError, match="not an empty folder"):
        export_dataset(store, tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    assert export_dataset(store, tmp_path / "empty")["n_holes"] > 0


def test_empty_store_gives_an_empty_snapshot(home, tmp_path):
    with Store.open(home) as store:
        manifest = export_dataset(store, tmp_path / "snap")
    assert manifest["n_holes"] == 0 and manifest["n_samples"] == 0
    assert read_snapshot(tmp_path / "snap") == []
