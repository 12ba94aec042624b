"""Labels: append-only history, latest wins, validation; label spreadsheets."""

from __future__ import annotations

import csv

import openpyxl
import pytest
from test_store_support import make_trace

from appliance.errors import NotFoundError, ValidationError
from appliance.points import DepthPoints
from appliance.store import Store
from appliance.store.label_files import COLUMNS, export_labels, import_labels


@pytest.fixture
def store(home):
    with Store.open(home) as s:
        yield s


def _inside(store: Store, hole_id: str) -> tuple[float, float, float]:
    row = store.get_hole(hole_id)
    lo, hi = row.depth_min_mm, row.depth_max_mm
    span = hi - lo
    return lo + 0.2 * span, lo + 0.5 * span, lo + 0.8 * span


def test_latest_label_wins_and_history_is_kept(store):
    hole_id, _ = store.add_hole(make_trace(1))
    e, t, x = _inside(store, hole_id)
    first = store.add_label(hole_id, DepthPoints(e, t, x), by="auto", origin="auto",
                            from_estimate={"entry_mm": e, "model_version": "v1"})
    second = store.add_label(hole_id, DepthPoints(e + 0.1, None, x), by="ann")
    assert second > first
    latest = store.latest_label(hole_id)
    assert latest.label_id == second and latest.by == "ann"
    assert latest.entry_mm == pytest.approx(e + 0.1) and latest.transition_mm is None
    assert latest.origin == "operator"
    history = store.label_history(hole_id)
    assert [h.label_id for h in history] == [first, second]
    assert history[0].from_estimate == {"entry_mm": e, "model_version": "v1"}
    assert history[0].at <= history[1].at
    assert store.get_hole(hole_id).label == latest
    assert store.latest_labels() == [latest]


def test_all_points_absent_is_a_label(store):
    hole_id, _ = store.add_hole(make_trace(2))
    store.add_label(hole_id, DepthPoints(None, None, None), by="ann")
    assert store.list_holes(labelled=True)[0].hole_id == hole_id


@pytest.mark.parametrize(
    ("points", "message"),
    [
        (lambda e, t, x: DepthPoints(t, e, x), "entry .* must be shallower than transition"),
        (lambda e, t, x: DepthPoints(e, None, e), "entry .* must be shallower than exit"),
        (lambda e, t, x: DepthPoints(e, t, 1e6), "exit 1000000.0 mm is outside"),
        (lambda e, t, x: DepthPoints(-5.0, t, x), "entry -5.0 mm is outside"),
        (lambda e, t, x: DepthPoints(float("nan"), t, x), "finite"),
        (lambda e, t, x: DepthPoints("7", t, x), "finite number"),
    ],
)
def test_invalid_points_rejected(store, points, message):
    hole_id, _ = store.add_hole(make_trace(3))
    with pytest.raises(ValidationError, match=message):
        store.add_label(hole_id, points(*_inside(store, hole_id)), by="ann")
    assert store.label_history(hole_id) == []


def test_label_needs_a_hole_a_name_and_a_known_origin(store):
    with pytest.raises(NotFoundError, match="0123456789abcdef"):
        store.add_label("0123456789abcdef", DepthPoints(1.0, 2.0, 3.0), by="ann")
    hole_id, _ = store.add_hole(make_trace(4))
    e, t, x = _inside(store, hole_id)
    with pytest.raises(ValidationError, match="who set it"):
        store.add_label(hole_id, DepthPoints(e, t, x), by="  ")
    with pytest.raises(ValidationError, match="origin"):
        store.add_label(hole_id, DepthPoints(e, t, x), by="ann", origin="guess")


def _write_csv(path, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        w.writerows(rows)


def test_import_reports_bad_rows_and_keeps_good_ones(store, tmp_path):
    a, _ = store.add_hole(make_trace(5, source="/in/tuhh-v4/V4_001.xls"), "tuhh-v4")
    b, _ = store.add_hole(make_trace(6, source="/in/mdb/M_1.xls"), "mdb")
    ea, ta, xa = _inside(store, a)
    eb, _, xb = _inside(store, b)
    path = tmp_path / "labels.csv"
    _write_csv(path, [
        ["tuhh-v4/V4_001.xls", ea, ta, xa, "auto", "high", "fine"],
        ["nowhere/X.xls", 1, 2, 3, "auto", "high", ""],
        [b, eb, "", str(xb).replace(".", ","), "manual", "low", "by id, comma decimal"],
        ["M_1.xls", "deep", "", "", "auto", "high", ""],
        ["V4_001.xls", xa, ta, ea, "auto", "high", "reversed"],
    ])
    report = import_labels(store, path, by="lab")
    assert [r["row"] for r in report.imported] == [2, 4]
    rejected = {r["row"]: r["error"] for r in report.rejected}
    assert set(rejected) == {3, 5, 6}
    assert "unknown hole 'nowhere/X.xls'" in rejected[3]
    assert "entry_mm: 'deep' is not a number" in rejected[5]
    assert "must be shallower" in rejected[6]
    la = store.latest_label(a)
    assert la.origin == "import" and la.by == "lab"
    assert la.detail == {"method": "auto", "confidence": "high", "notes": "fine"}
    lb = store.latest_label(b)
    assert lb.transition_mm is None and lb.exit_mm == pytest.approx(xb)

    again = import_labels(store, path, by="lab")
    assert again.imported == [] and [r["row"] for r in again.unchanged] == [2, 4]
    assert len(store.label_history(a)) == 1


def test_import_rejects_unusable_files(store, tmp_path):
    with pytest.raises(ValidationError, match=r"\.csv or \.xlsx"):
        import_labels(store, tmp_path / "labels.txt")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,entry_mm\nx,1\n")
    with pytest.raises(ValidationError, match="no 'path'"):
        import_labels(store, bad)
    bad.write_text("path,entry_mm\nx,1\n")
    with pytest.raises(ValidationError, match="transition_mm, exit_mm"):
        import_labels(store, bad)


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_export_then_import_round_trip(store, tmp_path, suffix, home):
    ids = [store.add_hole(make_trace(i, source=f"/in/g/H_{i}.xls"), "g")[0] for i in range(3)]
    e, t, x = _inside(store, ids[0])
    store.add_label(ids[0], DepthPoints(e, t, x), by="ann")
    e1, _, x1 = _inside(store, ids[1])
    store.add_label(ids[1], DepthPoints(e1, None, x1), by="auto", origin="auto")
    out = tmp_path / f"labels{suffix}"
    assert export_labels(store, out) == 2
    if suffix == ".xlsx":
        sheet = openpyxl.load_workbook(out).active
        rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    else:
        with open(out, newline="") as fh:
            rows = list(csv.reader(fh))
    assert tuple(rows[0]) == COLUMNS
    by_path = {r[0]: r for r in rows[1:]}
    # portable names: the shortest folder/file ending that is unique in this store
    assert set(by_path) == {"g/H_0.xls", "g/H_1.xls"}
    assert by_path["g/H_0.xls"][4] == "manual" and by_path["g/H_1.xls"][4] == "auto"

    with Store.open(tmp_path / "other-home") as other:
        for i in range(3):
            other.add_hole(make_trace(i, source=f"/elsewhere/g/H_{i}.xls"), "g")
        report = import_labels(other, out)
        assert report.rejected == [] and len(report.imported) == 2
        got = other.latest_label(ids[0])
        assert (got.entry_mm, got.transition_mm, got.exit_mm) == pytest.approx((e, t, x))
        assert other.latest_label(ids[1]).transition_mm is None
        assert other.latest_label(ids[2]) is None


def test_export_names_are_short_but_unique(store, tmp_path):
    a, _ = store.add_hole(make_trace(1, source="/site-a/rig/H_1.xls"), "rig")
    b, _ = store.add_hole(make_trace(2, source="/site-b/rig/H_1.xls"), "rig")
    c, _ = store.add_hole(make_trace(3, source="upload.json"), "api")
    for hole_id in (a, b, c):
        e, _, x = _inside(store, hole_id)
        store.add_label(hole_id, DepthPoints(e, None, x), by="ann")
    out = tmp_path / "labels.csv"
    export_labels(store, out)
    with open(out, newline="") as fh:
        paths = [r["path"] for r in csv.DictReader(fh)]
    assert sorted(paths) == ["api/upload.json", "site-a/rig/H_1.xls", "site-b/rig/H_1.xls"]
    index = store.source_index()
    assert [index.lookup(p) for p in sorted(paths)] == [[c], [a], [b]]
