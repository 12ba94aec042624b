"""The evaluation harness: metric arithmetic on hand-made cases, labels.csv, the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.errors import ValidationError
from appliance.evaluation import LabelRow, evaluate, read_labels, write_labels
from appliance.points import DepthEstimate, DepthPoints


def P(e, t, x) -> DepthPoints:  # noqa: N802 - reads like a literal
    return DepthPoints(e, t, x)


def test_metric_arithmetic_with_nulls_on_either_side() -> None:
    labels = [P(5.0, 10.0, 20.0), P(5.0, None, 20.0), P(None, 10.0, None), P(6.0, 11.0, 21.0)]
    estimates = [
        P(5.1, 10.3, 20.0),    # errors 0.1, 0.3, 0.0
        P(5.6, 12.0, None),    # entry 0.6; transition fp; exit fn
        P(4.0, None, None),    # entry fp; transition fn; exit tn
        P(6.2, 11.0, 21.45),   # errors 0.2, 0.0, 0.45
    ]
    rep = evaluate(estimates, labels, None)
    e, t, x = rep.points["entry"], rep.points["transition"], rep.points["exit"]
    assert (e.n, t.n, x.n) == (3, 2, 2)
    assert e.mae_mm == pytest.approx((0.1 + 0.6 + 0.2) / 3)
    assert t.mae_mm == pytest.approx(0.15)
    assert x.mae_mm == pytest.approx(0.225)
    assert e.within_0_25 == pytest.approx(2 / 3) and e.within_0_5 == pytest.approx(2 / 3)
    assert t.within_0_25 == pytest.approx(0.5) and t.within_0_5 == pytest.approx(1.0)
    assert x.within_0_25 == pytest.approx(0.5) and x.within_0_5 == pytest.approx(1.0)
    assert (e.tp, e.fp, e.fn, e.tn) == (3, 1, 0, 0)
    assert (t.tp, t.fp, t.fn, t.tn) == (2, 1, 1, 0)
    assert (x.tp, x.fp, x.fn, x.tn) == (2, 0, 1, 1)
    assert rep.n == 4
    assert rep.overall.holes_presence_right == pytest.approx(2 / 4)
    assert rep.overall.presence_accuracy == pytest.approx(8 / 12)
    d = rep.as_dict()
    assert d["n"] == 4
    assert d["points"]["entry"] == {"mae_mm": pytest.approx(0.3),
                                    "within_0_25": pytest.approx(2 / 3),
                                    "within_0_5": pytest.approx(2 / 3), "n": 3}
    assert d["presence"]["transition"]["fp"] == 1 and d["presence"]["exit"]["tn"] == 1
    assert d["groups"] == {}


def test_groups_are_scored_separately_and_estimates_accepted() -> None:
    labels = [P(5.0, None, 20.0), P(5.0, None, 20.0), P(7.0, 15.0, None)]
    ests = [DepthEstimate(5.5, None, 20.0), DepthEstimate(5.0, 3.0, 20.0),
            DepthEstimate(7.1, 15.1, None)]
    groups = [{"source": "a", "stack": "cfrp"}, {"source": "a", "stack": "cfrp"},
              {"source": "b", "stack": "cfrp/ti"}]
    rep = evaluate(ests, labels, groups)
    a = rep.groups["source"]["a"]
    b = rep.groups["source"]["b"]
    assert a.n == 2 and b.n == 1
    assert a.points["entry"].mae_mm == pytest.approx(0.25)
    assert a.points["transition"].fp == 1 and a.points["transition"].n == 0
    assert a.points["transition"].mae_mm is None
    assert b.points["transition"].mae_mm == pytest.approx(0.1)
    assert rep.groups["stack"]["cfrp/ti"].points["exit"].tn == 1
    assert json.loads(json.dumps(rep.as_dict()))["groups"]["source"]["b"]["n"] == 1


def test_empty_and_mismatched_inputs() -> None:
    rep = evaluate([], [], None)
    assert rep.n == 0 and rep.points["entry"].mae_mm is None
    assert rep.overall.presence_accuracy is None
    with pytest.raises(ValueError, match="2 estimates for 1 labels"):
        evaluate([P(1.0, None, None)] * 2, [P(1.0, None, None)], None)
    with pytest.raises(ValueError, match="group entries"):
        evaluate([P(1.0, None, None)], [P(1.0, None, None)], [])


def test_labels_round_trip_and_precise_errors(tmp_path: Path) -> None:
    rows = [LabelRow("a/x.xls", P(5.25, None, 20.0), "manual", "low", "note, with comma"),
            LabelRow("y.xls", P(None, None, None), "auto", "high", "")]
    path = tmp_path / "labels.csv"
    write_labels(rows, path)
    assert read_labels(path) == rows
    bad = tmp_path / "bad.csv"
    bad.write_text("path,entry_mm,transition_mm,exit_mm,method,confidence,notes\n"
                   "a.xls,5.0,,20,auto,high,\nb.xls,five,,,auto,high,\n")
    with pytest.raises(ValidationError, match=r"bad.csv: line 3: entry_mm 'five'"):
        read_labels(bad)
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("path,entry_mm\nx.xls,1\n")
    with pytest.raises(ValidationError, match="missing column"):
        read_labels(nocol)
    with pytest.raises(ValidationError, match="cannot read"):
        read_labels(tmp_path / "absent.csv")


def test_evaluate_command_on_synthetic_files(tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    assert main(["synth", "--n", "6", "--out", str(tmp_path / "data"), "--seed", "4"]) == 0
    capsys.readouterr()
    labels = tmp_path / "data" / "labels.csv"
    assert main(["evaluate", "--estimator", "heuristic", "--labels", str(labels),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 6 and out["failures"] == [] and out["estimator"] == "heuristic"
    for name in ("entry", "transition", "exit"):
        assert set(out["points"][name]) == {"mae_mm", "within_0_25", "within_0_5", "n"}
        if out["points"][name]["n"]:
            assert out["points"][name]["mae_mm"] < 0.15
    assert set(out["groups"]) == {"source", "variant", "stack"}
    assert out["groups"]["variant"]["v9"]["n"] == 6

    # a broken file and a missing one are reported, the rest still scored
    (tmp_path / "data" / "synth_00001.xls").write_text("not a setitec log\n")
    rows = read_labels(labels) + [LabelRow("gone.xls", P(1.0, None, None))]
    write_labels(rows, labels)
    assert main(["evaluate", "--labels", str(labels)]) == 3
    captured = capsys.readouterr()
    assert "synth_00001.xls: not evaluated" in captured.err
    assert "gone.xls: not evaluated" in captured.err
    assert "estimator heuristic: 5 holes, 2 not parsed" in captured.out
    assert "by stack" in captured.out


def test_evaluate_command_with_root_and_bad_estimator(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    assert main(["synth", "--n", "2", "--out", str(tmp_path / "files"), "--seed", "2"]) == 0
    rows = read_labels(tmp_path / "files" / "labels.csv")
    elsewhere = tmp_path / "elsewhere.csv"
    write_labels(rows, elsewhere)
    capsys.readouterr()
    assert main(["evaluate", "--labels", str(elsewhere), "--root",
                 str(tmp_path / "files"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 2
    assert main(["evaluate", "--estimator", str(tmp_path / "nope"),
                 "--labels", str(elsewhere)]) == 4
    assert "not a model folder" in capsys.readouterr().err
