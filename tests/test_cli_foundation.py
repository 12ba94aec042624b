"""The foundation verbs: ingest, holes, label, labels import/export, export-dataset.

Run in-process through appliance.cli.main, and as real subprocesses where the process
boundary matters (JSON on a clean stdout, the lock held by another process).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import openpyxl
import pytest

from appliance.cli import main
from appliance.commands._common import cli_actor
from appliance.ingest.fixtures import sample_trace
from appliance.ingest.setitec_writer import write_setitec
from appliance.points import DepthPoints
from appliance.store import Store


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv: str) -> tuple[int, object]:
    code, out, _ = run(capsys, *argv, "--json")
    return code, json.loads(out)


@pytest.fixture
def inbox(tmp_path) -> Path:
    """Two distinct logs, a byte-identical copy under another name, and a broken file."""
    root = tmp_path / "inbox"
    (root / "rig-a").mkdir(parents=True)
    (root / "rig-b").mkdir()
    first = write_setitec(sample_trace(seed=1), variant="v9")
    (root / "rig-a" / "H_001.xls").write_bytes(first)
    (root / "rig-a" / "H_002.xls").write_bytes(write_setitec(sample_trace(seed=2), variant="v4"))
    (root / "rig-b" / "H_001_copy.xls").write_bytes(first)
    (root / "rig-b" / "broken.xls").write_bytes(b"*** General Infos ***\nVersion\n")
    (root / "rig-b" / "notes.txt").write_text("not a log: ignored by the walk")
    return root


def _labels_inside(store: Store, hole_id: str) -> tuple[float, float, float]:
    h = store.get_hole(hole_id)
    lo, hi = h.depth_min_mm, h.depth_max_mm
    return round(lo + 0.3 * (hi - lo), 3), round(lo + 0.5 * (hi - lo), 3), round(
        lo + 0.7 * (hi - lo), 3)


def test_ingest_json_shape_exit_codes_and_quarantine(capsys, inbox, home):
    code, report = run_json(capsys, "ingest", str(inbox), "--home", str(home))
    assert code == 3  # something rejected, the rest ingested
    assert set(report) == {"ingested", "duplicates", "rejected"}
    assert [set(e) for e in report["ingested"]] == [{"source", "hole_id", "samples"}] * 2
    assert [set(e) for e in report["duplicates"]] == [{"source", "hole_id"}]
    assert [set(e) for e in report["rejected"]] == [{"source", "error"}]
    by_name = {Path(e["source"]).name: e for e in report["ingested"]}
    assert set(by_name) == {"H_001.xls", "H_002.xls"}
    assert by_name["H_001.xls"]["samples"] == 300
    dup = report["duplicates"][0]
    assert Path(dup["source"]).name == "H_001_copy.xls"
    assert dup["hole_id"] == by_name["H_001.xls"]["hole_id"]
    rejected = report["rejected"][0]
    assert Path(rejected["source"]).name == "broken.xls" and "broken.xls" in rejected["error"]

    with Store.open(home) as store:
        assert store.count_holes() == 2
        q = store.quarantined()
        assert len(q) == 1 and q[0]["source"] == rejected["source"] and q[0]["size"] > 0
        assert store.get_hole(by_name["H_001.xls"]["hole_id"]).source_group == "rig-a"
        [entry] = store.audit_log(action="ingest")
        assert entry.detail is not None and entry.detail["rejected"] == 1

    # everything again, minus the broken file: all duplicates, exit 0
    (inbox / "rig-b" / "broken.xls").unlink()
    code, again = run_json(capsys, "ingest", str(inbox), "--home", str(home))
    assert code == 0 and again["ingested"] == [] and again["rejected"] == []
    assert len(again["duplicates"]) == 3


def test_ingest_human_output_names_every_file(capsys, inbox, home):
    code, out, err = run(capsys, "ingest", str(inbox / "rig-a"), str(inbox / "rig-b"),
                         "--home", str(home))
    assert code == 3
    lines = out.strip().splitlines()
    assert len(lines) == 5  # four files + summary
    assert sum(line.startswith("ingested") for line in lines) == 2
    assert any(line.startswith("duplicate") and "H_001_copy.xls" in line for line in lines)
    assert any(line.startswith("rejected") and "broken.xls" in line for line in lines)
    assert lines[-1].startswith("2 ingested, 1 duplicates, 1 rejected")
    assert err == ""  # no progress noise when stderr is not a terminal


def test_ingest_usage_error_for_missing_path(capsys, tmp_path, home):
    code, out, err = run(capsys, "ingest", str(tmp_path / "nowhere"), "--home", str(home))
    assert code == 2 and "nowhere: no such file or folder" in err
    assert not (home / "appliance.duckdb").exists()


def test_holes_sorted_by_review_priority(capsys, home):
    from appliance.points import DepthEstimate
    from appliance.synth import generate

    priorities = {"low": 0.1, "old": None, "high": 0.8, "never": "-", "mid": 0.4}
    names = {}
    with Store.open(home) as store:
        for (name, prio), hole in zip(priorities.items(), generate(5, 81), strict=True):
            hid, _ = store.add_hole(hole.trace, "g")
            names[hid] = name
            if prio != "-":
                store.add_prediction(hid, DepthEstimate(
                    None, None, None, spread_mm={"entry": 0.2}, model_version="m",
                    estimator="ensemble", review_priority=prio))
    code, rows = run_json(capsys, "holes", "--sort", "priority", "--home", str(home))
    assert code == 0
    assert [names[r["id"]] for r in rows] == ["never", "high", "mid", "low", "old"]
    assert [r["review_priority"] for r in rows] == [None, 0.8, 0.4, 0.1, None]
    code, out, _ = run(capsys, "holes", "--sort", "priority", "--limit", "2", "--home",
                       str(home))
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["id", "prio"]
    assert [line.split()[1] for line in lines[1:3]] == ["-", "80%"]
    assert lines[-1] == "2 holes"
    # the default stays ingest order, without the column
    code, out, _ = run(capsys, "holes", "--home", str(home))
    assert "prio" not in out.splitlines()[0]
    assert [names[line.split()[0]] for line in out.splitlines()[1:-1]] == list(priorities)


def test_holes_label_and_listing(capsys, inbox, home):
    run(capsys, "ingest", str(inbox / "rig-a"), "--home", str(home))
    code, rows = run_json(capsys, "holes", "--home", str(home))
    assert code == 0 and len(rows) == 2
    assert {r["labelled"] for r in rows} == {False}
    target = rows[0]["id"]
    with Store.open(home) as store:
        e, t, x = _labels_inside(store, target)

    code, out, _ = run(capsys, "label", target, "--entry", str(e), "--transition", "none",
                       "--exit", str(x), "--by", "ann", "--home", str(home))
    assert code == 0 and f"stored for hole {target}" in out
    code, lab = run_json(capsys, "holes", "--labelled", "--home", str(home))
    assert [r["id"] for r in lab] == [target]
    assert lab[0]["label"]["entry_mm"] == e and lab[0]["label"]["transition_mm"] is None
    assert lab[0]["label"]["by"] == "ann"
    code, unl = run_json(capsys, "holes", "--unlabelled", "--home", str(home))
    assert [r["id"] for r in unl] == [rows[1]["id"]]

    code, out, _ = run(capsys, "holes", "--home", str(home))
    assert code == 0 and "labelled" in out and target in out and "unlabelled" in out

    # by file name instead of id; a newer label wins
    code, res = run_json(capsys, "label", "H_001.xls", "--entry", str(e + 0.1), "--transition",
                         str(t), "--exit", str(x), "--by", "bob", "--home", str(home))
    with Store.open(home) as store:
        hole = store.find_hole_by_source("H_001.xls")
        assert res["hole_id"] == hole
        assert store.latest_label(hole).by == "bob"


def test_label_refusals(capsys, inbox, home):
    run(capsys, "ingest", str(inbox / "rig-a"), "--home", str(home))
    with Store.open(home) as store:
        hole = store.list_holes()[0].hole_id
        e, t, x = _labels_inside(store, hole)
    code, _, err = run(capsys, "label", hole, "--entry", str(x), "--transition", "none",
                       "--exit", str(e), "--by", "ann", "--home", str(home))
    assert code == 2 and "must be shallower" in err
    code, _, err = run(capsys, "label", "feedfacefeedface", "--entry", "1", "--transition",
                       "none", "--exit", "none", "--by", "ann", "--home", str(home))
    assert code == 2 and "no hole 'feedfacefeedface'" in err
    with pytest.raises(SystemExit) as info:
        main(["label", hole, "--entry", "deep", "--transition", "none", "--exit", "none",
              "--by", "ann", "--home", str(home)])
    assert info.value.code == 2
    with Store.open(home) as store:
        assert store.label_history(hole) == []


def test_labels_import_export_cli(capsys, inbox, home, tmp_path):
    run(capsys, "ingest", str(inbox / "rig-a"), "--home", str(home))
    with Store.open(home) as store:
        ids = {Path(r.source).name: r.hole_id for r in store.list_holes()}
        e, t, x = _labels_inside(store, ids["H_001.xls"])
    sheet = tmp_path / "labels.csv"
    sheet.write_text(
        "path,entry_mm,transition_mm,exit_mm,method,confidence,notes\n"
        f"rig-a/H_001.xls,{e},{t},{x},manual,high,ok\n"
        "rig-a/H_999.xls,1,2,3,manual,high,unknown\n"
        f"{ids['H_002.xls']},,,,manual,low,no points\n"
    )
    code, rep = run_json(capsys, "labels", "import", str(sheet), "--home", str(home),
                         "--by", "lab")
    assert code == 3
    assert [r["row"] for r in rep["imported"]] == [2, 4]
    assert rep["rejected"] == [{"row": 3, "key": "rig-a/H_999.xls",
                                "error": "unknown hole 'rig-a/H_999.xls' (not ingested?)"}]
    with Store.open(home) as store:
        [entry] = store.audit_log(action="labels-import")
        assert entry.detail is not None
        assert (entry.actor, entry.detail["by"]) == (cli_actor(), "lab")
    # who set the labels is held to the rule of every label (PUT /holes/{id}/label too),
    # said once for the file rather than once per row
    code, _, err = run(capsys, "labels", "import", str(sheet), "--home", str(home),
                       "--by", "lab\x1b[2J")
    assert code == 2 and "control characters" in err and "\x1b" not in err
    out_csv = tmp_path / "out.csv"
    code, res = run_json(capsys, "labels", "export", str(out_csv), "--home", str(home))
    assert code == 0 and res["rows"] == 2
    with open(out_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [Path(r["path"]).name for r in rows] == ["H_001.xls", "H_002.xls"]
    assert float(rows[0]["entry_mm"]) == e and rows[1]["entry_mm"] == ""
    assert rows[0]["notes"] == "ok" and rows[0]["method"] == "manual"
    code, _, err = run(capsys, "labels", "import", str(tmp_path / "x.ods"), "--home", str(home))
    assert code == 2 and ".csv or .xlsx" in err
    code, rep = run_json(capsys, "labels", "export", str(tmp_path / "out.xlsx"), "--home",
                         str(home))
    assert code == 0 and (tmp_path / "out.xlsx").stat().st_size > 0


def test_labels_import_refuses_nan_naming_file_row_and_column(capsys, inbox, home, tmp_path):
    run(capsys, "ingest", str(inbox / "rig-a"), "--home", str(home))
    with Store.open(home) as store:
        ids = {Path(r.source).name: r.hole_id for r in store.list_holes()}
        e, t, x = _labels_inside(store, ids["H_001.xls"])
    sheet = tmp_path / "checked.csv"
    sheet.write_text(
        "path,entry_mm,transition_mm,exit_mm,method,confidence,notes\n"
        f"rig-a/H_001.xls,{e},{t},nan,manual,high,a lost value\n"
        f"rig-a/H_002.xls,{e},none,,manual,high,absent: none and an empty cell\n"
    )
    book = openpyxl.Workbook()
    book.active.append(["path", "entry_mm", "transition_mm", "exit_mm"])
    book.active.append(["rig-a/H_001.xls", "NaN", t, x])
    book.save(tmp_path / "checked.xlsx")
    code, out, _ = run(capsys, "labels", "import", str(sheet), "--home", str(home))
    assert code == 3
    assert (f"{sheet} row 2: rejected (rig-a/H_001.xls): column exit_mm: 'nan' is not a "
            "depth") in out
    code, out, _ = run(capsys, "labels", "import", str(tmp_path / "checked.xlsx"),
                       "--home", str(home))
    assert code == 3 and f"{tmp_path / 'checked.xlsx'} row 2: " in out
    assert "column entry_mm: 'NaN' is not a depth" in out
    with Store.open(home) as store:
        assert store.label_history(ids["H_001.xls"]) == []  # never stored as "absent"
        absent = store.latest_label(ids["H_002.xls"])
        assert absent.transition_mm is None and absent.exit_mm is None


def test_export_dataset_cli(capsys, inbox, home, tmp_path):
    run(capsys, "ingest", str(inbox), "--home", str(home))
    with Store.open(home) as store:
        for row in store.list_holes():
            e, t, x = _labels_inside(store, row.hole_id)
            store.add_label(row.hole_id, DepthPoints(e, t, x), by="ann")
        exam = sum(store.is_exam(r.hole_id) for r in store.list_holes())
    code, manifest = run_json(capsys, "export-dataset", str(tmp_path / "snap"), "--home",
                              str(home))
    assert code == 0
    assert manifest["n_holes"] == 2 - exam and manifest["n_exam_excluded"] == exam
    assert (tmp_path / "snap" / "manifest.json").is_file()
    code, _, err = run(capsys, "export-dataset", str(tmp_path / "snap"), "--home", str(home))
    assert code == 2 and "not an empty folder" in err


def test_ingest_as_a_real_process_prints_clean_json(inbox, home):
    proc = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "ingest", str(inbox / "rig-a"), "--home",
         str(home), "--json"], capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert len(report["ingested"]) == 2 and report["rejected"] == []


HOLDER = textwrap.dedent("""
    import sys
    from appliance.store import Store
    store = Store.open(sys.argv[1])
    print("holding", flush=True)
    sys.stdin.readline()
""")


def test_locked_store_exits_4_with_one_line(inbox, home):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(home)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        for argv in (["ingest", str(inbox / "rig-a")], ["holes"]):
            proc = subprocess.run(
                [sys.executable, "-m", "appliance.cli", *argv, "--home", str(home)],
                capture_output=True, text=True, timeout=120,
            )
            assert proc.returncode == 4
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1, proc.stderr
            assert "locked" in lines[0] and "appliance serve" in lines[0]
            assert str(home / "appliance.duckdb") in lines[0]
    finally:
        holder.communicate("\n", timeout=30)


@pytest.mark.slow
def test_ingest_the_shared_setitec_folder(capsys, setitec_dir, home):
    files = sorted(p for p in setitec_dir.rglob("*") if p.suffix.lower() == ".xls")
    code, report = run_json(capsys, "ingest", str(setitec_dir), "--home", str(home))
    n = len(report["ingested"]) + len(report["duplicates"]) + len(report["rejected"])
    assert n == len(files) == 120
    assert code == (3 if report["rejected"] else 0)
    by_name = {Path(e["source"]).name: e["hole_id"]
               for e in report["ingested"] + report["duplicates"]}
    dup_names = {Path(e["source"]).name for e in report["duplicates"]}
    assert "V4_069.xls" in by_name and "V4_070.xls" in by_name
    assert by_name["V4_069.xls"] == by_name["V4_070.xls"]
    assert dup_names & {"V4_069.xls", "V4_070.xls"}
    with Store.open(home) as store:
        assert store.count_holes() == len(report["ingested"])
        for entry in report["ingested"][:5]:
            assert store.get_trace(entry["hole_id"]).n_samples == entry["samples"]

    # the shipped labels match every ingested hole by their relative paths
    code, rep = run_json(capsys, "labels", "import", str(setitec_dir / "labels.csv"),
                         "--home", str(home))
    assert rep["rejected"] == [] and code == 0
    assert len(rep["imported"]) + len(rep["unchanged"]) == 120


def test_progress_count_only_on_a_terminal(capsys, inbox, home, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    code, out, err = run(capsys, "ingest", str(inbox / "rig-a"), "--home", str(home), "--json")
    assert code == 0 and json.loads(out)["rejected"] == []
    assert "\r1 files..." in err and "\r2 files..." in err
    assert err.endswith("\r\033[K")  # the count is wiped before the result is printed


def test_tables_never_send_terminal_escapes(capsys: pytest.CaptureFixture[str]) -> None:
    from appliance.commands._common import print_table

    print_table([{"source": "V4\x1b[2J\x1b[31mred.xls", "by": "op\r\nforged line"}],
                ["source", "by"])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out
    assert "V4\\x1b[2J\\x1b[31mred.xls" in out and "op\\r\\nforged line" in out
    assert out.count("\n") == 2  # the header and one row: no line forged
