"""`appliance predict` and `appliance models ...` through appliance.cli.main (and once as a
real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from model_fixtures import build_model_folder, ramp_trace

from appliance.cli import main
from appliance.commands._common import cli_actor
from appliance.ingest.setitec_writer import write_setitec
from appliance.store import Store

REPO = Path(__file__).resolve().parent.parent
KEYS = {"source", "entry_mm", "transition_mm", "exit_mm", "spread_mm", "presence",
        "model_version", "estimator"}


@pytest.fixture
def env(tmp_path: Path, monkeypatch):
    cands = tmp_path / "candidates"
    cands.mkdir()
    baseline = build_model_folder(cands, "base")
    # the shipped baseline, as both the CLI and the service find it
    monkeypatch.setattr("appliance.commands.predict.baseline_model_dir", lambda: baseline)
    monkeypatch.setattr("appliance.registry.service.baseline_model_dir", lambda: baseline)
    files = []
    for i, (entry, exit_) in enumerate([(4.0, 15.0), (6.5, 21.0)]):
        f = tmp_path / f"hole{i}.xls"
        f.write_bytes(write_setitec(ramp_trace(entry_mm=entry, exit_mm=exit_, seed=i)))
        files.append(f)
    return tmp_path, cands, files


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_without_a_home_uses_the_baseline_and_creates_nothing(env, capsys) -> None:
    tmp, _, files = env
    home = tmp / "no-home-here"
    code, out, _ = run(capsys, "predict", *map(str, files), "--home", str(home), "--json")
    assert code == 0 and not home.exists()
    rows = json.loads(out)
    assert [set(r) for r in rows] == [KEYS, KEYS]
    assert rows[0]["source"] == str(files[0]) and rows[0]["estimator"] == "ensemble"
    assert rows[0]["model_version"] == "base"
    assert rows[0]["entry_mm"] == pytest.approx(4.0, abs=0.1)
    assert rows[1]["exit_mm"] == pytest.approx(21.0, abs=0.1)
    assert rows[0]["transition_mm"] is None and rows[0]["presence"]["transition"] < 0.5


def test_predict_with_model_folder_and_a_bad_file(env, capsys) -> None:
    tmp, cands, files = env
    other = build_model_folder(cands, "other", shift=4)
    bad = tmp / "bad.xls"
    bad.write_text("this is not a drilling log\n")
    code, out, err = run(capsys, "predict", str(files[0]), str(bad), "--model", str(other),
                         "--home", str(tmp / "h"), "--json")
    assert code == 3 and "bad.xls" in err
    rows = json.loads(out)
    assert len(rows) == 1 and rows[0]["model_version"] == "other"
    code, out, _ = run(capsys, "predict", str(files[0]), "--model", "nope", "--home",
                       str(tmp / "h"))
    assert code == 4


def test_models_cli_flow(env, capsys) -> None:
    tmp, cands, files = env
    home = str(tmp / "home")
    code, out, _ = run(capsys, "models", "list", "--home", home, "--json")
    assert code == 0 and [(r["version"], r["status"]) for r in json.loads(out)] == [
        ("base", "active")]
    worse = build_model_folder(cands, "worse", shift=2)
    code, out, _ = run(capsys, "models", "register", str(worse), "--home", home, "--json")
    assert code == 0 and json.loads(out)["status"] == "candidate"
    code, out, _ = run(capsys, "models", "gate", "worse", "--home", home, "--json")
    report = json.loads(out)
    # an empty exam set: accuracy cannot be shown, so promotion needs an override
    assert code == 4 and not report["passed"]
    assert {g["gate"]: g["status"] for g in report["gates"]}["accuracy"] == \
        "insufficient evidence"
    code, _, err = run(capsys, "models", "activate", "worse", "--home", home)
    assert code == 4 and "accuracy gate insufficient evidence" in err
    code, out, _ = run(capsys, "models", "activate", "worse", "--force", "--reason",
                       "pilot", "--actor", "ana", "--home", home)
    assert code == 0 and "forced" in out
    code, out, _ = run(capsys, "predict", str(files[0]), "--home", home, "--json")
    assert json.loads(out)[0]["model_version"] == "worse"
    code, out, _ = run(capsys, "models", "rollback", "--home", home, "--json")
    assert code == 0 and json.loads(out)["version"] == "base"
    code, out, _ = run(capsys, "models", "history", "--home", home, "--json")
    log = json.loads(out)
    assert [(a["action"], a["version"]) for a in log] == [
        ("rollback", "base"), ("activate", "worse"), ("activate", "base")]
    assert log[1]["actor"] == "cli:ana" and log[1]["reason"] == "pilot"
    code, out, _ = run(capsys, "models", "show", "worse", "--home", home)
    assert code == 0 and "retired" in out and "accuracy" in out


def test_predict_as_a_real_subprocess(env) -> None:
    tmp, cands, files = env
    model = build_model_folder(cands, "sub")
    proc = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "predict", str(files[1]), "--model",
         str(model), "--home", str(tmp / "none"), "--json"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)[0]
    assert row["estimator"] == "ensemble" and row["model_version"] == "sub"
    assert not (tmp / "none").exists()


def test_model_verbs_are_audited_as_the_api_audits_them(env, capsys) -> None:
    """The verbs call the registry service the API calls: the same audit entries, under
    `cli:<login name>` where the API writes its key's name."""
    tmp, cands, _ = env
    home = str(tmp / "home")
    code, _, _ = run(capsys, "models", "register", str(build_model_folder(cands, "cand", shift=2)),
                     "--home", home)
    assert code == 0
    run(capsys, "models", "gate", "cand", "--home", home)
    code, _, err = run(capsys, "models", "activate", "cand", "--force", "--home", home)
    assert code == 4 and "forcing activation of cand needs a reason" in err
    code, _, _ = run(capsys, "models", "activate", "cand", "--force", "--reason", "pilot",
                     "--home", home)
    assert code == 0
    code, _, _ = run(capsys, "models", "rollback", "--reason", "back", "--home", home)
    assert code == 0
    with Store.open(Path(home)) as store:
        log = store.audit_log()
    me = cli_actor()
    assert [(e.actor, e.action, e.subject) for e in reversed(log) if e.actor == me] == [
        (me, "model-register", "cand"), (me, "model-gate", "cand"),
        (me, "model-force-activate", "cand"), (me, "model-activate", "cand"),
        (me, "model-rollback", "base")]
    by_action = {e.action: e.detail for e in log if e.actor == me}
    assert by_action["model-activate"] == {"force": True, "reason": "pilot", "previous": "base"}
    assert by_action["model-rollback"] == {"reason": "back", "previous": "cand"}
