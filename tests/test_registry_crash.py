"""Crash safety: a 'kill' at each step of register/activate, then a fresh open must find a
consistent registry and a loadable active model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from model_fixtures import build_model_folder, ramp_trace

from appliance.config import GateConfig
from appliance.registry import ServingService, faults
from appliance.registry.faults import ACTIVATE_STEPS, REGISTER_STEPS, SimulatedCrash
from appliance.registry.folders import TMP_PREFIX, remove_tree

# latency off: these tests are about crashes; a loaded machine times equal models apart
GATES = GateConfig(min_exam=0, latency_factor=1e9)


def open_service(home: Path, baseline: Path) -> ServingService:
    return ServingService.open(home, GATES, baseline_dir=baseline)


@pytest.fixture
def setup(home: Path, tmp_path: Path):
    cands = tmp_path / "candidates"
    cands.mkdir()
    baseline = build_model_folder(cands, "v1")
    open_service(home, baseline).close()
    return home, cands, baseline


def crash_at(monkeypatch, step: str) -> None:
    def hook(name: str) -> None:
        if name == step:
            raise SimulatedCrash(step)
    monkeypatch.setattr(faults, "hook", hook)


def assert_consistent(service: ServingService) -> None:
    root = service.registry.root
    names = {p.name for p in root.iterdir()}
    assert not [n for n in names if n.startswith(TMP_PREFIX)], names
    rows = {r.version: r for r in service.list_versions()}
    for version, row in rows.items():
        if row.status != "rejected":
            assert version in names, f"row {version} without folder"
    assert names <= set(rows), f"folders without rows: {names - set(rows)}"
    active = [v for v, r in rows.items() if r.status == "active"]
    assert len(active) == 1 and service.active_version == active[0]
    assert service.store.active_version() == active[0]
    est = service.estimate(ramp_trace())
    assert est.estimator == "ensemble" and est.model_version == active[0]
    assert service.history()[0].version == active[0]


@pytest.mark.parametrize("step", REGISTER_STEPS)
def test_crash_during_register(setup, monkeypatch, step) -> None:
    home, cands, baseline = setup
    candidate = build_model_folder(cands, "v2")
    service = open_service(home, baseline)
    crash_at(monkeypatch, step)
    with pytest.raises(SimulatedCrash):
        service.register(candidate)
    service.close()
    monkeypatch.setattr(faults, "hook", None)
    reopened = open_service(home, baseline)
    assert_consistent(reopened)
    rows = {r.version: r for r in reopened.list_versions()}
    if step in ("register:copied", "register:sealed"):
        assert "v2" not in rows  # never published: the temp folder is gone
    else:
        # published (and maybe recorded): the folder was complete, so it is kept
        assert rows["v2"].status == "candidate"
        assert reopened.recovery.recovered_rows == (("v2",) if step == "register:renamed"
                                                     else ())
    # whatever happened, registering again works and yields a gateable candidate
    assert reopened.register(candidate).status == "candidate"
    assert reopened.gate("v2").passed
    reopened.close()


@pytest.mark.parametrize("step", ACTIVATE_STEPS)
def test_crash_during_activate(setup, monkeypatch, step) -> None:
    home, cands, baseline = setup
    service = open_service(home, baseline)
    service.register(build_model_folder(cands, "v2", seed=3))
    assert service.gate("v2").passed
    crash_at(monkeypatch, step)
    with pytest.raises(SimulatedCrash):
        service.activate("v2", actor="ana")
    service.close()
    monkeypatch.setattr(faults, "hook", None)
    reopened = open_service(home, baseline)
    assert_consistent(reopened)
    # the pointer is persisted only by the last step; before it the old model serves
    expected = "v2" if step == "activate:recorded" else "v1"
    assert reopened.active_version == expected
    reopened.close()


def test_row_without_folder_and_a_lost_active_folder(setup) -> None:
    home, cands, baseline = setup
    service = open_service(home, baseline)
    service.register(build_model_folder(cands, "v2", seed=1))
    service.gate("v2")
    service.activate("v2")
    service.register(build_model_folder(cands, "v3", seed=2))
    service.close()
    remove_tree(home / "models" / "v3")  # a candidate's folder lost
    remove_tree(home / "models" / "v2")  # ...and the active model's
    reopened = open_service(home, baseline)
    rows = {r.version: r for r in reopened.list_versions()}
    assert rows["v3"].status == "rejected" and rows["v2"].status == "rejected"
    assert rows["v3"].gate_report and "missing" in (rows["v3"].gate_report.recovery or "")
    assert set(reopened.recovery.missing_folders) == {"v2", "v3"}
    # the previous active version took over, logged as a rollback by the system
    assert reopened.active_version == "v1"
    top = reopened.history()[0]
    assert (top.version, top.previous_version, top.action, top.actor) == (
        "v1", "v2", "rollback", "system")
    assert "v2" in (top.reason or "")
    assert_consistent(reopened)
    reopened.close()


def test_stray_folder_without_manifest_is_removed(setup) -> None:
    home, cands, baseline = setup
    stray = home / "models" / "half"
    shutil.copytree(cands / "v1", stray)
    (stray / "manifest.json").unlink()
    reopened = open_service(home, baseline)
    assert not stray.exists() and reopened.recovery.removed_folders == ("half",)
    assert_consistent(reopened)
    reopened.close()


KILL_SCRIPT = """
import os, sys
from pathlib import Path
from appliance.config import GateConfig
from appliance.registry import ServingService, faults

home, baseline, candidate, step = sys.argv[1:5]
# the latency gate off: this test is about a kill, and a loaded machine can time two equal
# fixture models 1.5x apart
service = ServingService.open(Path(home), GateConfig(min_exam=0, latency_factor=1e9),
                              baseline_dir=Path(baseline))
faults.hook = lambda name: os._exit(137) if name == step else None
row = service.register(candidate)
service.gate(row.version)
service.activate(row.version, actor="killed")
os._exit(0)
"""


@pytest.mark.parametrize("step", ["register:renamed", "activate:recorded"])
def test_a_real_kill_leaves_a_consistent_registry(setup, step) -> None:
    home, cands, baseline = setup
    candidate = build_model_folder(cands, "v2", seed=8)
    repo = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(home), str(baseline), str(candidate), step],
        capture_output=True, text=True, cwd=repo, timeout=120,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    assert proc.returncode == 137, proc.stderr[-2000:]
    reopened = open_service(home, baseline)
    assert_consistent(reopened)
    # killed after the commit: the new pointer survives (DuckDB replays its WAL);
    # killed after the rename: the complete folder is adopted as a candidate
    assert reopened.active_version == ("v2" if step == "activate:recorded" else "v1")
    assert reopened.show("v2").status in ("candidate", "active")
    reopened.close()
