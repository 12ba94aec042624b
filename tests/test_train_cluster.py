"""Beyond one CPU: devices, folds as Ray tasks, the hyperparameter search, fleet training."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_api_support import running_daemon, trained_baseline  # noqa: F401 (fixture)
from test_jobs import FINE_TUNE, _labelled_home, _wait
from test_store_support import make_trace

from appliance.config import TrainConfig
from appliance.gates.integrity import check_integrity
from appliance.gates.parity import check_parity
from appliance.jobs.search import read_trials
from appliance.points import DepthPoints
from appliance.store import Store
from appliance.store.snapshot import export_dataset

torch = pytest.importorskip("torch")
load_file = pytest.importorskip("safetensors.torch").load_file
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="the cluster extra is not installed")

REPO = Path(__file__).resolve().parents[1]
TINY = ["--synthetic", "12", "--folds", "2", "--epochs", "1", "--arch", "cnn",
        "--augment", "0", "--replay", "0", "--seed", "4"]


def _appliance(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def _in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """The CLI in this process (torch is already imported here: seconds saved per call)."""
    from appliance.cli import main

    rc = main(list(args))
    return rc, capsys.readouterr().err


def _events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this box has a GPU")
def test_device_cuda_without_a_gpu_is_one_line_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = _in_process(capsys, "train", *TINY, "--device", "cuda",
                          "--out", str(tmp_path / "c"))
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--device cuda" in lines[0] and "cpu" in lines[0], err
    assert not (tmp_path / "c").exists()
    rc, err = _in_process(capsys, "tune", *TINY, "--trials", "1", "--device", "cuda",
                          "--out", str(tmp_path / "s"))
    assert rc == 2 and "--device cuda" in err


def test_device_auto_trains_on_what_torch_sees(tmp_path: Path) -> None:
    from appliance.train.devices import autocast, resolve_device

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with autocast(torch.device("cpu")):  # the CPU trains in float32
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_a_bad_ray_address_is_refused_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = _in_process(capsys, "train", *TINY, "--ray", "nowhere",
                          "--out", str(tmp_path / "c"))
    assert rc == 4 and "--ray 'nowhere'" in err, err


def test_ray_without_the_cluster_extra_says_how_to_install_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as on a box without the extra
    rc, err = _in_process(capsys, "train", *TINY, "--ray", "local",
                          "--out", str(tmp_path / "c"))
    assert rc == 2
    assert "pip install -e '.[cluster]'" in err and len(err.strip().splitlines()) == 1, err


@needs_ray
def test_ray_folds_resume_after_a_kill_into_the_folder_a_local_run_writes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cand"
    # three folds on this box's cores: at least one finishes before the others
    args = [sys.executable, "-m", "appliance.cli", "train", "--synthetic", "12", "--folds", "3",
            "--epochs", "1", "--arch", "cnn", "--augment", "0", "--replay", "0", "--seed", "4",
            "--ray", "local", "--device", "cpu", "--out", str(out), "--progress-json"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            cwd=REPO, start_new_session=True)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if line.startswith("{") and json.loads(line)["event"] == "fold_done":
                break
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray cluster it started
    finally:
        proc.wait(timeout=60)
    work = tmp_path / ".cand.work"
    finished = sorted(p.name for p in work.glob("fold*.json"))
    assert finished, "a finished fold was checkpointed before the kill"
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    events = _events(done.stdout)
    resumed = {e["fold"] for e in events if e["event"] == "fold_done" and e["resumed"]}
    assert {f"fold{f}.json" for f in resumed} == set(finished)
    trained = {e["fold"] for e in events if e["event"] == "epoch"}
    assert not trained & resumed  # a finished fold is not retrained
    folds_done = [e for e in events if e["event"] == "fold_done"]
    assert sorted(e["fold"] for e in folds_done) == [0, 1, 2]
    assert [e["folds_done"] for e in folds_done] == [1, 2, 3]  # counted, whichever ends first
    integrity, engine, probe = check_integrity(out)
    assert integrity.ok, integrity.summary
    assert engine is not None and probe is not None
    parity = check_parity(engine, probe)
    assert parity.ok, parity.summary
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["weights"]) == 3
    assert {r["device"] for r in manifest["training"]["fold_reports"]} == {"cpu"}
    assert not work.exists()  # checkpoints go once the folder is written
    # the same run without Ray gives the same members: a fold is the same function, seeded
    # the same, wherever it runs (one thread each, on the CPU)
    local = tmp_path / "local"
    rc, err = _in_process(capsys, *args[3:args.index("--ray")], "--device", "cpu",
                          "--out", str(local))
    assert rc == 0, err[-2000:]
    local_manifest = json.loads((local / "manifest.json").read_text())
    for ours, theirs in zip(manifest["weights"], local_manifest["weights"], strict=True):
        a, b = load_file(str(out / ours)), load_file(str(local / theirs))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), ours


def test_a_search_writes_best_and_trials_resumes_and_trains_with_best(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "search"
    search = [*TINY, "--epochs", "2", "--device", "cpu", "--out", str(out)]
    rc, err = _in_process(capsys, "tune", *search, "--trials", "2")
    assert rc == 0, err[-2000:]
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [int(r["number"]) for r in rows] == [0, 1]
    assert all(r["state"] in ("complete", "pruned") for r in rows)
    best = json.loads((out / "best.json").read_text())
    complete = [r for r in rows if r["state"] == "complete"]
    assert best["objective"] == pytest.approx(min(float(r["objective"]) for r in complete))
    assert set(best["params"]) == {"lr", "width", "patch_length", "stem_dilations",
                                   "augment_strength"}
    # run again asking for 3: the study in DIR resumes; the first two stay as they were
    rc, err = _in_process(capsys, "tune", *search, "--trials", "3")
    assert rc == 0, err[-2000:]
    trials = read_trials(out)
    assert [t.number for t in trials] == [0, 1, 2]
    assert [t.params for t in trials[:2]] == [
        {k: v for k, v in t.items() if v} for t in
        ({p: _typed(p, r[p]) for p in ("lr", "width", "patch_length", "stem_dilations",
                                        "head_epochs", "augment_strength")} for r in rows)]
    assert trials[2].params != trials[0].params  # not a replay of the first draw
    # the best parameters train a model with them
    best = json.loads((out / "best.json").read_text())
    cand = tmp_path / "cand"
    rc, err = _in_process(capsys, "train", *TINY, "--config", str(out / "best.json"),
                          "--device", "cpu", "--out", str(cand))
    assert rc == 0, err[-2000:]
    manifest = json.loads((cand / "manifest.json").read_text())
    assert manifest["training"]["config"] == best["params"]
    assert manifest["training"]["options"]["lr"] == pytest.approx(best["params"]["lr"])
    assert manifest["config"]["hidden"] == best["params"]["width"]


def _typed(name: str, cell: str) -> object:
    if not cell:
        return None
    if name in ("width", "patch_length", "head_epochs"):
        return int(cell)
    return cell if name == "stem_dilations" else float(cell)


def test_search_parameters_set_the_recipe() -> None:
    from appliance.errors import ValidationError
    from appliance.train.train import TrainOptions
    from appliance.train.tune import apply_params, score

    opts = apply_params(TrainOptions(augment=0), {
        "lr": 0.002, "width": 24, "patch_length": 64, "stem_dilations": "1-2",
        "head_epochs": 3, "augment_strength": 0.4})
    assert (opts.lr, opts.head_epochs, opts.augment_strength, opts.augment) == (0.002, 3, 0.4, 1)
    assert (opts.model.hidden, opts.model.d_model, opts.model.patch_length,
            opts.model.stem_dilations) == (24, 24, 64, (1, 2))
    assert TrainOptions().model.hidden == 16  # the defaults are not touched
    with pytest.raises(ValidationError, match="unknown tuned parameter"):
        apply_params(TrainOptions(), {"momentum": 0.9})
    metrics = {"points": {"entry": {"mae_mm": 0.1}, "transition": {"mae_mm": None},
                          "exit": {"mae_mm": 0.3}}, "presence": {"accuracy": 0.9}}
    assert score(metrics).objective == pytest.approx(0.2 + 0.1)


def _snapshot(home: Path, out: Path, rig: str, seeds: range) -> Path:
    home.mkdir(parents=True)
    with Store.open(home) as store:
        for i in seeds:
            hole_id, _ = store.add_hole(make_trace(i, n=200), f"batch-{i % 3}")
            row = store.get_hole(hole_id)
            store.add_label(hole_id, DepthPoints(row.depth_min_mm + 0.5, None,
                                                 row.depth_max_mm - 0.5), by="ann")
        export_dataset(store, out, rig=rig)
    return out


def test_fleet_snapshots_are_grouped_by_rig(tmp_path: Path) -> None:
    from appliance.train.data import from_snapshots

    a = _snapshot(tmp_path / "ha", tmp_path / "snap-a", "rig-a", range(0, 30))
    b = _snapshot(tmp_path / "hb", tmp_path / "snap-b", "rig-b", range(25, 50))  # 5 shared
    two = from_snapshots([a, b], folds=2)
    assert two.fold_by == "rig"  # as many rigs as folds: each fold judged on an unseen rig
    assert {h.group for h in two.holes} == {"rig-a", "rig-b"}
    shared = two.duplicates
    assert shared > 0 and sum(two.rigs.values()) + shared == len(from_snapshots(
        [a], 2).holes) + len(from_snapshots([b], 2).holes)
    five = from_snapshots([a, b], folds=5)
    assert five.fold_by == "group"
    assert all(h.group.split("/")[0] in ("rig-a", "rig-b") for h in five.holes)
    assert len({h.group for h in five.holes}) >= 5  # each rig's groups kept apart


def test_train_on_two_rigs_snapshots_records_the_fleet(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _snapshot(tmp_path / "ha", tmp_path / "snap-a", "rig-a", range(0, 10))
    b = _snapshot(tmp_path / "hb", tmp_path / "snap-b", "rig-b", range(10, 20))
    out = tmp_path / "fleet"
    rc, err = _in_process(capsys, "train", "--dataset", str(a), "--dataset", str(b),
                          "--folds", "2", "--epochs", "1", "--arch", "cnn", "--augment", "0",
                          "--replay", "0", "--device", "cpu", "--out", str(out))
    assert rc == 0, err[-2000:]
    training = json.loads((out / "manifest.json").read_text())["training"]
    # each snapshot holds its rig's labelled holes outside that rig's exam set
    assert set(training["rigs"]) == {"rig-a", "rig-b"}
    assert sum(training["rigs"].values()) == training["n_holes"]
    assert training["fold_by"] == "rig" and training["n_groups"] == 2
    assert training["dataset"] == ["snap-a", "snap-b"]


@needs_ray
def test_a_daemon_job_trains_its_folds_on_ray(
        tmp_path: Path, trained_baseline: Path) -> None:  # noqa: F811
    with running_daemon(tmp_path / "home", trained_baseline,
                        train=TrainConfig(device="cpu", ray="local")) as (daemon, client, h):
        _labelled_home(client, h, n=8, seed=54)
        job = client.post("/jobs/fine-tune", headers=h, json=FINE_TUNE).json()
        # a Ray cluster starts and its workers import torch before the folds: on a busy
        # 2-core box that alone can take a minute
        done = _wait(client, h, job["id"], lambda j: j["status"] not in ("queued", "running"),
                     timeout=420)
        assert done["status"] == "succeeded", done
        assert done["progress"]["fraction"] == 1.0
        log = (daemon.config.home / "jobs" / job["id"] / "train.log").read_text()
        assert '"folds_done": 2' in log
        folder = daemon.models.folder(done["candidate_version"])
        training = json.loads((folder / "manifest.json").read_text())["training"]
        assert training["ray"] == "local" and training["device"] == "cpu"
        model = client.get(f"/models/{done['candidate_version']}", headers=h).json()
        assert {g["gate"] for g in model["gate_report"]["gates"]} >= {"integrity", "parity"}


def test_a_trial_a_killed_search_left_running_is_tried_again(tmp_path: Path) -> None:
    optuna = pytest.importorskip("optuna")
    from appliance.train.train import TrainOptions
    from appliance.train.tune import Search, open_study

    search = Search([], TrainOptions(), tmp_path / "search", trials=3)
    abandoned = open_study(search).ask()  # as a search killed in the middle of a trial
    lr = abandoned.suggest_float("lr", 3e-4, 1e-2, log=True)
    reopened = open_study(search)
    states = [t.state for t in reopened.get_trials()]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.WAITING]
    retried = reopened.ask()
    assert retried.suggest_float("lr", 3e-4, 1e-2, log=True) == lr
