"""`appliance backup` / `appliance restore`: a backup taken while a real daemon serves (and
stores holes) over loopback HTTP, restored into a fresh home and compared; corrupt, missing and
foreign backup files refused by name with nothing touched; a home moved aside, never deleted."""

from __future__ import annotations

import json
import shutil
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from litestar.testing import TestClient
from model_fixtures import build_model_folder
from test_api_support import (  # noqa: F401  (fixture)
    add_key,
    cli,
    fixture_baseline,
    served,
    synth_files,
)

from api.app import create_app
from appliance.cli import main
from appliance.commands._common import cli_actor
from appliance.config import load_config
from appliance.ingest import parse_bytes
from appliance.points import DepthPoints
from appliance.services.backup import MANIFEST_FILE
from appliance.services.daemon import Daemon
from appliance.store import Store


def _post_hole(c: httpx.Client, name: str, data: bytes) -> str:
    r = c.post("/holes", params={"source": name}, content=data,
               headers={"Content-Type": "application/octet-stream"})
    assert r.status_code in (200, 201), r.text
    return str(r.json()["hole"]["id"])


def _contents(store: Store) -> dict:
    """What a restore must give back, read through the store's own interface."""
    holes = {h.hole_id: h for h in store.list_holes()}
    return {
        "holes": {i: (h.n_samples, h.source) for i, h in holes.items()},
        "labels": {i: [(lab.label_id, lab.entry_mm, lab.exit_mm, lab.by)
                       for lab in store.label_history(i)] for i in holes},
        "models": {m.version: m.status for m in store.list_models()},
        "active": store.active_version(),
        "keys": {k["name"]: k["role"] for k in store.api_keys()},
        "audit": {a.audit_id: (a.action, a.subject) for a in store.audit_log()},
    }


def test_backup_while_the_daemon_serves_restores_into_a_fresh_home(
        tmp_path: Path, fixture_baseline: Path) -> None:  # noqa: F811
    home, backup, fresh = tmp_path / "home", tmp_path / "backup", tmp_path / "elsewhere" / "home"
    candidate = build_model_folder(tmp_path / "cand", "fixture-cand", shift=1)
    files = synth_files(10, seed=71)
    daemon = Daemon.open(load_config(home), schedule=False, baseline_dir=fixture_baseline)
    try:
        admin = add_key(daemon)
        daemon.models.serving.register(candidate, actor="tester")  # registered, not active
        # leftovers a backup must skip: an unfinished registration, a job's work folder
        (home / "models" / ".tmp-fixture-x").mkdir()
        (home / "models" / ".tmp-fixture-x" / "junk.onnx").write_bytes(b"x")
        (home / "models" / "stray").mkdir()  # a folder no row registers
        (home / "models" / "stray" / "manifest.json").write_text("{}")
        (home / "jobs" / "j1" / "dataset").mkdir(parents=True)
        (home / "jobs" / "j1" / "dataset" / "holes.parquet").write_bytes(b"x")
        with served(daemon) as url, httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {admin}"}, timeout=30) as c:
            ids = [_post_hole(c, n, d) for n, d, _ in files[:4]]
            truth = files[0][2]
            assert truth.entry_mm is not None
            for by, entry in (("ana", truth.entry_mm), ("ben", truth.entry_mm + 0.05)):
                assert c.put(f"/holes/{ids[0]}/label", json={
                    "entry_mm": entry, "transition_mm": None, "exit_mm": truth.exit_mm,
                    "by": by}).status_code == 200
            made = c.post("/keys", json={"name": "scada", "role": "integration"})
            scada = made.json()["key"]
            # holes arrive while the backup is taken (from when the daemon starts writing
            # it): it must hold each one whole or not at all
            stop = threading.Event()

            def keep_ingesting() -> None:
                while not (home / "backups").exists() and not stop.wait(0.005):
                    pass
                with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"},
                                  timeout=30) as c2:
                    for name, data, _ in files[4:]:
                        if stop.is_set():
                            return
                        _post_hole(c2, name, data)

            writer = threading.Thread(target=keep_ingesting)
            writer.start()
            try:
                with ThreadPoolExecutor(1) as pool:
                    # the daemon owns the home: a restore over it is refused in one line
                    restoring = pool.submit(cli, "restore", str(backup), "--home", str(home),
                                            "--force")
                    took = cli("backup", str(backup), "--home", str(home), "--url", url,
                               "--json")
                    refused = restoring.result()
            finally:
                stop.set()
                writer.join(timeout=30)
            assert took.returncode == 0, took.stderr
            assert json.loads(took.stdout)["active_model"] == "fixture-base"
            assert refused.returncode == 4
            assert refused.stderr.strip().count("\n") == 0
            assert "a daemon owns" in refused.stderr
        live = _contents(daemon.store)
        assert (home / "appliance.duckdb").is_file()  # the refused restore moved nothing
        daemon.store.audit("tester", "after-backup", None, None)  # not in the backup
    finally:
        daemon.close()

    assert list((home / "backups").iterdir()) == []  # the daemon's backup was moved out
    manifest = json.loads((backup / MANIFEST_FILE).read_text())
    listed = {f["path"] for f in manifest["files"]}
    assert {"appliance.duckdb", "admin.key"} <= listed
    assert {p.split("/")[1] for p in listed if p.startswith("models/")} == {
        "fixture-base", "fixture-cand"}
    assert not any(".tmp-" in p or p.startswith("jobs") for p in listed)

    assert main(["restore", str(backup), "--home", str(fresh)]) == 0
    with Store.open(fresh) as store:
        restored = _contents(store)
        for hole_id in restored["holes"]:  # each hole whole: samples as counted at ingest
            assert store.get_trace(hole_id).n_samples == restored["holes"][hole_id][0]
        paths = {m.version: m.path for m in store.list_models()}
    assert set(ids) <= set(restored["holes"]) <= set(live["holes"])
    assert {i: live["holes"][i] for i in restored["holes"]} == restored["holes"]
    assert restored["labels"][ids[0]] == live["labels"][ids[0]]
    assert [lab[3] for lab in restored["labels"][ids[0]]] == ["ana", "ben"]
    assert restored["models"] == live["models"] == {"fixture-base": "active",
                                                    "fixture-cand": "candidate"}
    assert restored["active"] == "fixture-base"
    assert restored["keys"] == live["keys"]
    backed_up = {k: v for k, v in restored["audit"].items() if v[0] != "restore"}
    assert backed_up == {k: v for k, v in live["audit"].items() if k in backed_up}
    assert sorted(backed_up) == sorted(live["audit"])[:len(backed_up)]  # none skipped
    assert ("label", ids[0]) in backed_up.values() and ("key-create", "scada") in \
        backed_up.values()
    assert ("restore", None) in restored["audit"].values()
    assert ("after-backup", None) not in restored["audit"].values()
    assert paths == {v: str(fresh / "models" / v) for v in ("fixture-base", "fixture-cand")}
    assert stat.S_IMODE((fresh / "models" / "fixture-base" / "manifest.json").stat().st_mode) \
        == 0o444
    assert stat.S_IMODE((fresh / "admin.key").stat().st_mode) == 0o600

    # the restored home serves: its model loads, the keys work, the history is there
    again = Daemon.open(load_config(fresh), schedule=False, baseline_dir=fixture_baseline)
    try:
        with TestClient(create_app(again)) as client:
            r = client.get("/holes", headers={"Authorization": f"Bearer {scada}"})
            assert r.status_code == 200 and r.json()["total"] == len(restored["holes"])
            active = client.get("/models/active", headers={"Authorization": f"Bearer {admin}"})
            assert active.json()["version"] == "fixture-base"
            assert client.post("/keys", json={"name": "x", "role": "admin"},
                               headers={"Authorization": f"Bearer {scada}"}).status_code == 403
            refused = client.post("/backups", headers={"Authorization": f"Bearer {scada}"})
            assert refused.status_code == 403 and "'admin'" in refused.json()["detail"]
        assert again.models.serving.recovery is not None
        assert not again.models.serving.recovery.changed  # folders and rows agree
    finally:
        again.close()


@pytest.fixture
def small_home(tmp_path: Path) -> Path:
    """A home with one hole and its label (no model: none is needed to back up a store)."""
    home = tmp_path / "home"
    name, data, truth = synth_files(1, seed=5)[0]
    with Store.open(home) as store:
        hole_id, _ = store.add_hole(parse_bytes(data, name))
        store.add_label(hole_id, DepthPoints(truth.entry_mm, None, truth.exit_mm), "ana")
    (home / "admin.key").write_text("apk_x\n")
    return home


@pytest.fixture
def small_backup(small_home: Path, tmp_path: Path) -> Path:
    """A backup of small_home taken by `appliance backup` with no daemon running."""
    out = tmp_path / "backup"
    assert main(["backup", str(out), "--home", str(small_home)]) == 0
    return out


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def test_a_corrupt_or_missing_file_is_refused_by_name_and_nothing_is_touched(
        small_backup: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "target"
    db = small_backup / "appliance.duckdb"
    good = db.read_bytes()
    db.write_bytes(good[:4096] + bytes([good[4096] ^ 0xFF]) + good[4097:])
    capsys.readouterr()
    assert main(["restore", str(small_backup), "--home", str(target)]) == 4
    err = _one_line_error(capsys)
    assert "appliance.duckdb does not match its sha256" in err and "nothing was restored" in err
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if ".restoring-" in p.name] == []

    db.write_bytes(good)
    (small_backup / "admin.key").unlink()
    assert main(["restore", str(small_backup), "--home", str(target)]) == 4
    assert "admin.key is missing" in _one_line_error(capsys)
    assert not target.exists()

    # a manifest that would write outside the home is refused before anything is read
    (small_backup / "admin.key").write_text("apk_x\n")
    manifest = json.loads((small_backup / MANIFEST_FILE).read_text())
    manifest["files"].append({"path": "../evil", "bytes": 1, "sha256": "0" * 64})
    (small_backup / MANIFEST_FILE).write_text(json.dumps(manifest))
    assert main(["restore", str(small_backup), "--home", str(target)]) == 4
    assert "'../evil' is not a file a backup holds" in _one_line_error(capsys)
    assert not target.exists() and not (tmp_path / "evil").exists()


def test_a_home_in_use_is_moved_aside_only_with_force(
        small_backup: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    capsys.readouterr()
    assert main(["restore", str(small_backup), "--home", str(target)]) == 4
    assert "is not empty" in _one_line_error(capsys)
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]

    assert main(["restore", str(small_backup), "--home", str(target), "--force"]) == 0
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("target.before-restore-")]
    assert len(aside) == 1 and (aside[0] / "notes.txt").read_text() == "keep me"
    with Store.open(target) as store:
        assert store.count_holes() == 1 and store.count_holes(labelled=True) == 1

    # a backup never lands on top of anything either
    capsys.readouterr()
    assert main(["backup", str(aside[0]), "--home", str(target)]) == 4
    assert "is not an empty folder" in _one_line_error(capsys)


def test_the_store_copy_holds_what_was_committed_and_no_write_in_flight(
        small_home: Path, tmp_path: Path) -> None:
    from appliance.store.backup import copy_database

    (tmp_path / "copied").mkdir()
    with Store.open(small_home) as store:
        hole_id = store.list_holes()[0].hole_id
        with store.cursor() as con:
            writer = con.cursor()  # another connection of the daemon, mid-transaction
        writer.begin()
        writer.execute("INSERT INTO audit (\"at\", actor, action) VALUES (now(), 'w', 'late')")
        # taken while the write is in flight, without waiting for it
        copy = copy_database(store, tmp_path / "copied" / "appliance.duckdb")
        writer.commit()
        writer.close()
        assert copy.counts["holes"] == 1 and copy.counts["labels"] == 1
        assert "late" in [a.action for a in store.audit_log()]
    with Store.open(tmp_path / "copied") as copied:
        assert "late" not in [a.action for a in copied.audit_log()]
        assert [lab.by for lab in copied.label_history(hole_id)] == ["ana"]
        assert copied.get_trace(hole_id).n_samples == copied.get_hole(hole_id).n_samples


def test_a_backup_that_would_fill_the_disk_is_refused_before_writing(
        small_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    free = shutil.disk_usage(tmp_path).free
    monkeypatch.setattr("appliance.services.backup.RESERVE_BYTES", free)  # never enough
    capsys.readouterr()
    assert main(["backup", str(tmp_path / "b"), "--home", str(small_home)]) == 4
    assert "MB free where the backup goes" in _one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_the_cli_backup_and_restore_are_audited_as_its_user(
        small_home: Path, small_backup: Path, tmp_path: Path) -> None:
    me = cli_actor()  # as POST /backups audits its key's name
    with Store.open(small_home) as store:
        assert [(e.actor, e.subject) for e in store.audit_log(action="backup")] == [
            (me, small_backup.name)]
    target = tmp_path / "restored"
    assert main(["restore", str(small_backup), "--home", str(target)]) == 0
    with Store.open(target) as store:
        assert [e.actor for e in store.audit_log(action="restore")] == [me]
