"""A full disk: one line and exit 4 from the CLI, 507 from the API (logged), ingest stores what
fits and nothing half-written, and no training job starts below [train] min_free_mb.

The disk really fills: an 8 MB tmpfs mounted for the test (root only: the tests that need it
skip elsewhere), its free space taken by a filler file.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from test_api_support import (  # noqa: F401  (fixture)
    fixture_baseline,
    ingest,
    running_daemon,
    synth_files,
)

from appliance.cli import main
from appliance.config import TrainConfig
from appliance.errors import ValidationError, disk_full
from appliance.store import Store

OCTET = {"Content-Type": "application/octet-stream"}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """Leave about `leave` bytes free on the disk; returns the filler (remove it to free)."""
    filler = disk / "filler"
    with filler.open("wb") as fh:
        fh.write(b"\0" * max(0, shutil.disk_usage(disk).free - leave))
    return filler


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def api_log() -> Iterator[_Records]:
    # on the logger itself: Litestar's logging set-up takes the root logger's handlers over
    records = _Records()
    logger = logging.getLogger("appliance.api")
    logger.addHandler(records)
    try:
        yield records
    finally:
        logger.removeHandler(records)


def test_disk_full_is_told_from_other_errors() -> None:
    os_error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/home/models/v1/m.onnx")
    assert str(disk_full(os_error)) == ("no space left on device writing "
                                        "/data/home/models/v1/m.onnx: free space on that disk, "
                                        "then try again")
    duck = duckdb.IOException('IO Error: Could not write file "/data/home/appliance.duckdb.wal":'
                              ' No space left on device')
    assert disk_full(duck) is not None
    assert disk_full(duck).problem == ("no space left on device writing "  # type: ignore[union-attr]
                                       "/data/home/appliance.duckdb.wal")
    try:
        try:
            raise duck
        except duckdb.Error as exc:
            raise RuntimeError("while exporting the snapshot") from exc
    except RuntimeError as wrapped:
        assert disk_full(wrapped) is not None  # found through the cause
    assert disk_full(OSError(errno.EACCES, "Permission denied", "/x")) is None
    assert disk_full(duckdb.IOException('IO Error: Cannot open file "/x": Permission denied')) \
        is None
    assert disk_full(ValidationError("entry must be shallower than exit")) is None


def test_ingest_stores_what_fits_then_says_so_in_one_line(
        small_disk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    for name, data, _ in synth_files(12, seed=41):
        (logs / name).write_bytes(data)
    home = small_disk / "home"
    Store.open(home).close()
    filler = _fill(small_disk, leave=160_000)  # room for a few holes, not for 12 at once
    code = main(["ingest", str(logs), "--home", str(home)])
    out, err = capsys.readouterr()
    assert code == 4
    # one line, naming the file it could not write and how far the run got
    assert err.count("\n") == 1 and err.startswith("appliance ingest: no space left on device "
                                                   f"writing {home / 'appliance.duckdb'}")
    stored = [line for line in out.splitlines() if line.startswith("ingested")]
    assert 0 < len(stored) < 12  # one commit of 12 holes does not fit: smaller ones did
    assert f"{len(stored)} hole(s) stored by this run" in err
    first_unstored = sorted(logs.iterdir())[len(stored)]
    assert f"{first_unstored} and the inputs after it are not" in err

    filler.unlink()
    code = main(["ingest", str(logs), "--home", str(home)])
    out, _ = capsys.readouterr()
    assert code == 0
    kinds = [line.split()[0] for line in out.splitlines()[:-1]]
    assert kinds == ["duplicate"] * len(stored) + ["ingested"] * (12 - len(stored))
    with Store.open(home) as store, store.cursor() as con:
        holes, declared = con.execute("SELECT count(*), sum(n_samples) FROM holes").fetchone()
        samples = con.execute("SELECT count(*), sum(n_samples) FROM traces").fetchone()
    assert holes == 12 and samples == (12, declared)  # no hole half-written


def test_api_answers_507_logged_and_serves_on_once_there_is_room(
        small_disk: Path, fixture_baseline: Path, api_log: _Records) -> None:  # noqa: F811
    with running_daemon(small_disk / "home", fixture_baseline) as (daemon, client, h):
        (name, data, _), (other, more, _) = synth_files(2, seed=43)
        filler = _fill(small_disk, leave=4_000)  # less than the hole and its answer take
        r = client.post("/holes", params={"source": name}, content=data, headers={**h, **OCTET})
        assert r.status_code == 507
        assert r.json()["detail"].startswith("no space left on device writing "
                                             "appliance.duckdb")  # relative to the home
        assert daemon.store.count_holes() == 0
        logged = [rec for rec in api_log.records if "507" in rec.getMessage()]
        assert len(logged) == 1 and "POST /holes" in logged[0].getMessage()
        filler.unlink()
        ids = ingest(client, h, [(name, data, None), (other, more, None)])
        assert daemon.store.count_holes() == 2 and len(set(ids)) == 2


def test_no_training_job_starts_below_the_free_space_threshold(
        tmp_path: Path, fixture_baseline: Path, api_log: _Records) -> None:  # noqa: F811
    free_mb = shutil.disk_usage(tmp_path).free / 2**20
    with running_daemon(tmp_path / "home", fixture_baseline,
                        train=TrainConfig(min_free_mb=free_mb * 10)) as (daemon, client, h):
        files = synth_files(1, seed=44)
        hole = ingest(client, h, files)[0]
        label = {**files[0][2].as_dict(), "by": "op"}
        assert client.put(f"/holes/{hole}/label", headers=h, json=label).status_code in (200, 201)
        r = client.post("/jobs/fine-tune", headers=h, json={"folds": 2, "epochs": 1})
        assert r.status_code == 507
        assert "[train] min_free_mb" in r.json()["detail"] and "MB free" in r.json()["detail"]
        assert any("min_free_mb" in rec.getMessage() for rec in api_log.records)
        nightly = client.post("/jobs/nightly", headers=h, json={"force": True}).json()
        assert nightly["started"] is False and "min_free_mb" in nightly["reason"]
        assert client.get("/jobs", headers=h).json() == [] and daemon.jobs.running() is None
