"""The watched folder: real files in a temp folder, a real daemon on a temp home.

Timing is polled against a deadline; the only fixed waits check that nothing more happens.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from test_api_support import fixture_baseline, write_config  # noqa: F401  (fixture)

from appliance.bus.watch import FolderWatcher, WatchStatus, is_drill_log
from appliance.cli import build_parser
from appliance.commands.serve import with_bus_flags
from appliance.config import WatchConfig, load_config
from appliance.errors import ValidationError
from appliance.ingest.setitec_writer import write_setitec
from appliance.services.daemon import Daemon
from appliance.synth import generate

SETTLE_S = 0.3


def _log(seed: int) -> tuple[bytes, int]:
    """A valid Setitec log of one synthetic hole and its sample count."""
    trace = generate(1, seed)[0].trace
    return write_setitec(trace), trace.n_samples


@contextmanager
def _daemon(home: Path, baseline: Path, folders: list[Path], settle_s: float = SETTLE_S
            ) -> Iterator[Daemon]:
    config = load_config(home)
    config = replace(config, watch=WatchConfig(paths=tuple(str(f) for f in folders),
                                               settle_s=settle_s))
    daemon = Daemon.open(config, schedule=False, baseline_dir=baseline)
    try:
        yield daemon
    finally:
        daemon.close()


def _status(daemon: Daemon) -> WatchStatus:
    assert daemon.watcher is not None
    return daemon.watcher.status()


def _until(daemon: Daemon, done: Callable[[WatchStatus], bool], limit_s: float = 15.0
           ) -> WatchStatus:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        status = _status(daemon)
        if done(status):
            return status
        time.sleep(0.05)
    raise AssertionError(f"watcher never got there: {_status(daemon)}")


def _quiet(daemon: Daemon, seconds: float = 3 * SETTLE_S) -> WatchStatus:
    """The status after a wait in which nothing more should have happened."""
    before = _status(daemon)
    time.sleep(seconds)
    after = _status(daemon)
    assert after == before
    return after


def test_a_growing_file_is_read_once_whole_after_it_stopped_growing(
        tmp_path: Path, home: Path, fixture_baseline: Path) -> None:  # noqa: F811
    folder = tmp_path / "drop"
    folder.mkdir()
    data, n_samples = _log(1)
    settle_s = 0.6  # the pauses below stay well short of it even on a busy machine
    with _daemon(home, fixture_baseline, [folder], settle_s=settle_s) as daemon:
        path = folder / "unit7_0001.xls"
        chunks = 6
        size = len(data) // chunks + 1
        with path.open("wb") as fh:
            for i in range(chunks):
                fh.write(data[i * size:(i + 1) * size])
                fh.flush()
                time.sleep(settle_s / 4)
                assert _status(daemon).ingested == 0, "read while still growing"
        status = _until(daemon, lambda s: s.ingested + s.quarantined + s.failed > 0)
        assert (status.ingested, status.quarantined, status.failed) == (1, 0, 0)
        assert status.last_file == str(path)
        assert status.last_at is not None
        assert _quiet(daemon, 2 * settle_s).ingested == 1
        assert daemon.store.count_holes() == 1
        hole = daemon.store.list_holes()[0]
        assert hole.n_samples == n_samples
        assert hole.source == path.name  # its file name, as `appliance ingest` stores it
        assert daemon.store.quarantined() == []


def test_a_malformed_file_is_quarantined_and_watching_goes_on(
        tmp_path: Path, home: Path, fixture_baseline: Path) -> None:  # noqa: F811
    folder = tmp_path / "drop"
    folder.mkdir()
    with _daemon(home, fixture_baseline, [folder]) as daemon:
        bad = folder / "broken.xls"
        bad.write_bytes(b"this is not a drill log\n\x00\x01 at all\n")
        _until(daemon, lambda s: s.quarantined == 1)
        quarantined = daemon.store.quarantined()
        # under its file name, as its hole would be (the daemon's log names the full path)
        assert [q["source"] for q in quarantined] == [bad.name]
        data, n_samples = _log(2)
        good = folder / "unit7_0002.xls"
        good.write_bytes(data)
        status = _until(daemon, lambda s: s.ingested == 1)
        assert (status.quarantined, status.failed, status.last_file) == (1, 0, str(good))
        assert daemon.store.list_holes()[0].n_samples == n_samples


def test_a_file_the_store_refuses_is_quarantined_with_its_reason(
        tmp_path: Path, home: Path, fixture_baseline: Path) -> None:  # noqa: F811
    """Watched files go through the one ingest `appliance ingest` and POST /holes use: a
    trace the store refuses (here: too many samples) is quarantined, bytes and reason."""
    data, n_samples = _log(3)
    write_config(home, f"[daemon]\nmax_samples_per_hole = {n_samples - 1}\n")
    folder = tmp_path / "drop"
    folder.mkdir()
    with _daemon(home, fixture_baseline, [folder]) as daemon:
        (folder / "long.xls").write_bytes(data)
        status = _until(daemon, lambda s: s.quarantined + s.failed > 0)
        assert (status.ingested, status.quarantined, status.failed) == (0, 1, 0)
        [entry] = daemon.store.quarantined()
        assert entry["source"] == "long.xls" and entry["size"] == len(data)
        assert entry["error"].startswith(f"long.xls: the trace has {n_samples:,} samples")
        assert daemon.store.count_holes() == 0


def test_a_byte_identical_copy_is_a_duplicate(
        tmp_path: Path, home: Path, fixture_baseline: Path) -> None:  # noqa: F811
    folder = tmp_path / "drop"
    folder.mkdir()
    with _daemon(home, fixture_baseline, [folder]) as daemon:
        first = folder / "unit7_0003.xls"
        first.write_bytes(_log(3)[0])
        _until(daemon, lambda s: s.ingested == 1)
        copy = folder / "copy of unit7_0003.xls"
        shutil.copyfile(first, copy)
        status = _until(daemon, lambda s: s.duplicates == 1)
        assert (status.ingested, status.quarantined, status.failed) == (1, 0, 0)
        assert daemon.store.count_holes() == 1
        hole_id = daemon.store.list_holes()[0].hole_id
        assert set(daemon.store.hole_sources(hole_id)) == {first.name, copy.name}


def test_files_there_before_start_are_ingested_hidden_and_temporary_ones_not(
        tmp_path: Path, home: Path, fixture_baseline: Path) -> None:  # noqa: F811
    folder = tmp_path / "drop"
    (folder / "unit9").mkdir(parents=True)
    (folder / "old.XLS").write_bytes(_log(4)[0])
    (folder / "unit9" / "older.xls").write_bytes(_log(5)[0])
    (folder / ".unit9_0001.xls.part").write_bytes(_log(6)[0])  # a copy still under way
    (folder / "~$unit9_0001.xls").write_bytes(b"an office lock file")
    (folder / ".hidden.xls").write_bytes(b"not for us")
    (folder / "notes.txt").write_bytes(b"shift notes")
    with _daemon(home, fixture_baseline, [folder]) as daemon:
        _until(daemon, lambda s: s.ingested == 2)
        status = _quiet(daemon)
        assert (status.ingested, status.duplicates, status.quarantined, status.failed) == \
            (2, 0, 0, 0)
        assert sorted(h.source for h in daemon.store.list_holes()) == ["old.XLS", "older.xls"]
        assert daemon.store.quarantined() == []


def test_is_drill_log_follows_appliance_ingest() -> None:
    assert is_drill_log(Path("a/b/V4_001.xls"))
    assert is_drill_log(Path("V4_001.XLS"))
    assert is_drill_log(Path("msg.json"))
    for name in ("x.xls.part", ".x.xls", "~$x.xls", "x.txt", "x"):
        assert not is_drill_log(Path(name)), name


def test_a_missing_folder_refuses_the_start_by_name(
        tmp_path: Path, home: Path, fixture_baseline: Path) -> None:  # noqa: F811
    there = tmp_path / "there"
    there.mkdir()
    missing = tmp_path / "not-mounted"
    with pytest.raises(ValidationError, match=str(missing)):
        FolderWatcher([there, missing], ingest=lambda data, source, group: True)
    with pytest.raises(ValidationError, match=str(missing)), \
            _daemon(home, fixture_baseline, [there, missing]):
        pass
    # refused before the store was opened: a start without the bad folder works
    with _daemon(home, fixture_baseline, [there]) as daemon:
        assert _status(daemon).paths == (str(there.resolve()),)


def test_close_returns_promptly(tmp_path: Path) -> None:
    watcher = FolderWatcher([tmp_path], ingest=lambda data, source, group: True, settle_s=5.0)
    watcher.start()
    time.sleep(0.3)
    started = time.monotonic()
    watcher.close()
    assert time.monotonic() - started < 2.0


def test_serve_watch_flags_reach_the_config(tmp_path: Path, home: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(home, '[watch]\npaths = ["/srv/rig/logs"]\nsettle_s = 2.5\ngroup = "rig3"\n')
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(
        ["serve", "--home", str(home), "--watch", "drop", "--watch", "~/other"])
    assert args.watch == ["drop", "~/other"]
    config = with_bus_flags(load_config(args.home), args.mqtt, args.watch)
    assert config.watch == WatchConfig(
        paths=("/srv/rig/logs", str(tmp_path.resolve() / "drop"),
               str(Path("~/other").expanduser().resolve())),
        settle_s=2.5, group="rig3")
    assert with_bus_flags(load_config(args.home), None, None).watch.paths == ("/srv/rig/logs",)
