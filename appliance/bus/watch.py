"""Watched folders: drill logs that appear in a folder are ingested once they stop growing.

A drilling unit, a network share or a copy writes a log over some time, so a file is only
read once its size and mtime have held still for `settle_s`; one that keeps changing is looked
at again on the next tick. Files already in the folders when the watcher starts are ingested
too: a log written while the daemon was down must not be missed, and the store recognises
what it already holds by content hash.

The watcher stores nothing itself: `ingest(data, source, group)` does (the daemon hands it its
hole service), returns whether a new hole was created, and raises IngestError (a malformed
file) or ValidationError (a trace the store refuses) after it has quarantined the file.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import watchfiles

from appliance.errors import DiskFullError, IngestError, ValidationError
from appliance.ingest.discover import SUFFIXES

log = logging.getLogger("appliance.watch")

Ingest = Callable[[bytes, str, str | None], bool]
Signature = tuple[int, int]  # (size, mtime_ns): what must hold still before a file is read


@dataclass(frozen=True)
class WatchStatus:
    paths: tuple[str, ...]
    ingested: int = 0
    duplicates: int = 0
    quarantined: int = 0
    failed: int = 0  # unreadable files and unexpected errors (logged with the file name)
    last_file: str | None = None
    last_at: str | None = None  # ISO 8601, UTC


@dataclass
class _Pending:
    signature: Signature
    since: float  # monotonic time the signature was first seen


def is_drill_log(path: Path) -> bool:
    """A file `appliance ingest` would read, less the hidden and temporary names that copies
    and editors leave while they write (`.x.xls.part`, `~$x.xls`)."""
    name = path.name
    return (not name.startswith((".", "~"))
            and path.suffix.lower() in SUFFIXES)


def check_folders(paths: Sequence[Path | str]) -> None:
    """ValidationError naming every folder that cannot be watched: a daemon refuses to start
    rather than watch nothing without a word."""
    if not paths:
        raise ValidationError("no folder to watch")
    problems = [f"{p}: {'not a folder' if Path(p).exists() else 'no such folder'}"
                for p in paths if not Path(p).is_dir()]
    if problems:
        raise ValidationError("cannot watch " + "; ".join(problems))


class FolderWatcher:
    def __init__(self, paths: Sequence[Path], ingest: Ingest, settle_s: float = 1.0,
                 group: str | None = None) -> None:
        check_folders(paths)
        self.paths = tuple(Path(p).resolve() for p in paths)
        self.settle_s = max(0.0, float(settle_s))
        self.group = group
        self._ingest = ingest
        # one tick of the loop: settling is detected within a tick of settle_s, and close()
        # returns within one step
        self._tick_ms = int(min(500, max(50, self.settle_s * 1000 / 4)))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._status = WatchStatus(paths=tuple(str(p) for p in self.paths))
        self._pending: dict[Path, _Pending] = {}
        # the signature each file was last handled at: a late or repeated change event for a
        # file that has not changed since must not read it again
        self._handled: dict[Path, Signature] = {}

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="watch", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            if self._thread.is_alive():
                log.warning("the folder watcher did not stop within %.0f s", timeout)

    def status(self) -> WatchStatus:
        with self._lock:
            return self._status

    # -- the loop ----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            # scanned again after a restart of the watch: files that came while it was down
            # (a share remounted) are found, those already handled are not read again
            scanned = False
            try:
                # no watch_filter: a filtered-out batch yields nothing, so a busy
                # temporary file next to a pending log would starve its settle checks
                for changes in watchfiles.watch(
                    *self.paths, watch_filter=None, debounce=self._tick_ms,
                    step=min(50, self._tick_ms), stop_event=self._stop,
                    rust_timeout=self._tick_ms, yield_on_timeout=True, raise_interrupt=False,
                ):
                    if not scanned:
                        # only now is the OS watch in place: a file written between this
                        # scan and the watch's start would otherwise be missed
                        self._note(self._existing())
                        scanned = True
                    self._note_changes(changes)
                    self._settle()
                    if self._stop.is_set():
                        break
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("watching %s failed; watching again in 5 s",
                              ", ".join(str(p) for p in self.paths))
                self._stop.wait(5.0)

    def _existing(self) -> list[Path]:
        found: list[Path] = []
        for root in self.paths:
            try:
                found += sorted(p for p in root.rglob("*") if is_drill_log(p) and p.is_file())
            except OSError as exc:
                log.warning("cannot list %s: %s", root, exc)
        return found

    def _note_changes(self, changes: set[tuple[watchfiles.Change, str]]) -> None:
        touched: list[Path] = []
        for change, name in sorted(changes, key=lambda c: c[1]):
            path = Path(name)
            if not is_drill_log(path):
                continue
            if change == watchfiles.Change.deleted:
                self._pending.pop(path, None)
                self._handled.pop(path, None)
            else:
                touched.append(path)
        self._note(touched)

    def _note(self, paths: Iterable[Path]) -> None:
        now = time.monotonic()
        for path in paths:
            if path not in self._pending:
                signature = _signature(path)
                if signature is not None:
                    self._pending[path] = _Pending(signature, now)

    def _settle(self) -> None:
        """Read every pending file that has held still for settle_s; re-arm the others."""
        now = time.monotonic()
        for path, pending in list(self._pending.items()):
            if self._stop.is_set():
                return
            signature = _signature(path)
            if signature is None:  # gone (renamed or removed) before it settled
                del self._pending[path]
            elif signature != pending.signature:
                self._pending[path] = _Pending(signature, now)
            elif now - pending.since >= self.settle_s:
                if self._read_and_ingest(path, signature):
                    del self._pending[path]

    def _read_and_ingest(self, path: Path, signature: Signature) -> bool:
        """False when the file changed while it was read: it stays pending."""
        if self._handled.get(path) == signature:
            return True
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return True
        except OSError as exc:
            log.warning("cannot read watched file %s: %s", path, exc)
            self._handled[path] = signature
            self._count(path, "failed")
            return True
        after = _signature(path)
        if after != signature or len(data) != signature[0]:
            if after is not None:
                self._pending[path] = _Pending(after, time.monotonic())
            return False
        self._handled[path] = signature
        # named as `appliance ingest` names a file's hole: its file name
        source = path.name
        try:
            created = self._ingest(data, source, self.group)
        except (IngestError, ValidationError) as exc:  # quarantined by ingest
            log.warning("quarantined watched file %s: %s", path, exc)
            self._count(path, "quarantined")
        except DiskFullError as exc:  # the file stays; a restart's first scan takes it again
            log.error("watched file %s not stored: %s", path, exc)
            self._count(path, "failed")
        except Exception:
            log.exception("ingesting watched file %s failed", path)
            self._count(path, "failed")
        else:
            if created:
                log.info("ingested watched file %s", path)
            self._count(path, "ingested" if created else "duplicates")
        return True

    def _count(self, path: Path, outcome: str) -> None:
        with self._lock:
            s = self._status
            self._status = replace(s, **{outcome: getattr(s, outcome) + 1},
                                   last_file=str(path),
                                   last_at=datetime.now(UTC).isoformat(timespec="seconds"))


def _signature(path: Path) -> Signature | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)
