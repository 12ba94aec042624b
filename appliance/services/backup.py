"""Backup and restore of an appliance home: the store, the model folders, keys and settings.

A backup is a folder: `appliance.duckdb` (a consistent copy of the store, taken while the
daemon runs: appliance.store.backup), `models/<version>/` of every registered version,
`admin.key` and `appliance.toml` when the home has them, and `manifest.json` (appliance and
schema version, when, row counts, and every file's size and sha256). What is not there on
purpose: `jobs/` (a job's work folder; an interrupted job is failed on the next start),
`models/.tmp-*` (an unfinished registration), `backups/` and the DuckDB WAL (the copy is
complete without it).

While the daemon runs it owns the store, so it takes the backup itself, into
`<home>/backups/<name>/` under a name of its own: an API caller never chooses where on the box
the daemon writes. `appliance backup DIR` (run on the same box) then moves that folder to DIR.
With no daemon the command calls take_backup itself.

A restore checks every file against the manifest while copying it into a temp folder next to
the home, re-homes the model rows, seals the model folders, and only then renames the temp
folder into place; a home that holds anything is moved aside (with force), never deleted.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import appliance
from appliance.config import CONFIG_NAME
from appliance.errors import (
    ApplianceError,
    ConflictError,
    DiskFullError,
    NotFoundError,
    StoreLockedError,
    disk_full,
)
from appliance.home import BACKUPS_DIR, FIRST_KEY_FILE
from appliance.registry import folders
from appliance.store import DB_FILENAME, Store, db_path
from appliance.store.backup import copy_database, rehome_models
from appliance.store.codec import iso, utcnow
from appliance.store.connection import connect
from appliance.store.schema import MIGRATIONS

BACKUP_FORMAT = "appliance-backup/1"
MANIFEST_FILE = "manifest.json"
HOME_FILES = (CONFIG_NAME, FIRST_KEY_FILE)  # copied as they are, when the home has them
# A backup taken by the daemon lands on the disk the store lives on: it must leave this much
# free for the holes that keep arriving meanwhile.
RESERVE_BYTES = 256 * 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
PARTIAL = ".partial-"  # in the name of a backup folder still being written
_running = threading.Lock()  # one backup at a time: each holds a snapshot and disk space


class BackupError(ApplianceError):
    """A backup folder that cannot be read or trusted (missing, corrupt or foreign file)."""


@dataclass(frozen=True)
class BackupFile:
    path: str  # relative, with forward slashes
    bytes: int
    sha256: str


@dataclass(frozen=True)
class BackupManifest:
    format: str
    appliance_version: str
    schema_version: int
    created_at: str
    counts: dict[str, int]
    active_model: str | None
    models: tuple[str, ...]
    files: tuple[BackupFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["models"] = list(self.models)
        out["files"] = [asdict(f) for f in self.files]
        return out


@dataclass(frozen=True)
class Restored:
    manifest: BackupManifest
    home: Path
    moved_aside: Path | None  # where the home that was there went (--force)


# -- taking a backup -------------------------------------------------------------------------


def take_backup(store: Store, home: Path, dest: Path, actor: str) -> BackupManifest:
    """Write a backup of the home (whose store is `store`) into dest, a new or empty folder,
    audited as actor's.

    The folder appears complete or not at all: written as a temp folder next to dest, then
    renamed. One backup at a time per process (ConflictError otherwise)."""
    with _one_at_a_time():
        return _take(store, Path(home), Path(dest), actor)


def backup_into_home(store: Store, home: Path, actor: str) -> tuple[str, BackupManifest]:
    """The daemon's backup: into <home>/backups/<name>/, under a name it makes. (name, manifest)

    What a backup cut short by a crash left there is removed first."""
    home = Path(home)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"backup-{stamp}-{uuid.uuid4().hex[:6]}"
    with _one_at_a_time():
        backups = home / BACKUPS_DIR
        for stale in backups.glob(f".*{PARTIAL}*") if backups.is_dir() else ():
            folders.remove_tree(stale)
        return name, _take(store, home, backups / name, actor)


@contextmanager
def _one_at_a_time() -> Iterator[None]:
    if not _running.acquire(blocking=False):
        raise ConflictError("a backup is being taken already; wait for it to finish")
    try:
        yield
    finally:
        _running.release()


def _take(store: Store, home: Path, dest: Path, actor: str) -> BackupManifest:
    check_destination(dest)
    with _plainly("writing the backup"):
        dest.parent.mkdir(parents=True, exist_ok=True)
        _check_space(home, dest.parent)
        tmp = _partial(dest)
        tmp.mkdir()
        try:
            manifest = _write_backup(store, home, tmp)
            if dest.exists():
                dest.rmdir()  # empty, checked above
            os.rename(tmp, dest)
        except BaseException:
            folders.remove_tree(tmp)
            raise
    # after the copy: a backup holds the audit log as it was when it was taken
    store.audit(actor, "backup", dest.name, {"files": len(manifest.files),
                                             "bytes": manifest.total_bytes})
    return manifest


def _partial(dest: Path) -> Path:
    """The temp folder a backup is written as, next to where it goes (one rename away)."""
    return dest.parent / f".{dest.name}{PARTIAL}{uuid.uuid4().hex[:8]}"


def check_destination(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConflictError(f"{dest} exists and is not an empty folder: back up into a new or "
                            "empty folder")


def move_backup(source: Path, dest: Path) -> BackupManifest:
    """Move a finished backup folder to dest (new or empty): a rename on one file system,
    else a copy that is checked against the manifest before the source goes."""
    check_destination(dest)
    with _plainly(f"moving the backup to {dest}"):
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            dest.rmdir()
        try:
            os.rename(source, dest)
            return read_manifest(dest)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
        tmp = _partial(dest)
        try:
            shutil.copytree(source, tmp)
            manifest = verify_backup(tmp)
            os.rename(tmp, dest)
        except BaseException:
            folders.remove_tree(tmp)
            raise
        folders.remove_tree(source)
        return manifest


def _write_backup(store: Store, home: Path, out: Path) -> BackupManifest:
    created = iso(utcnow())
    copy = copy_database(store, out / DB_FILENAME)
    kept = []
    for version in copy.models:
        folder = folders.models_dir(home) / version
        if not folder.is_dir():
            continue  # its row is marked rejected by the registry's recovery; nothing to copy
        try:
            folders.copy_in(folder, out / folders.MODELS_DIR / version)
        except FileNotFoundError:
            if folder.is_dir():
                raise
            raise ApplianceError(f"model version {version} was removed during the backup; "
                                 "run the backup again") from None
        kept.append(version)
    for name in HOME_FILES:
        if (home / name).is_file():
            shutil.copyfile(home / name, out / name)
    manifest = BackupManifest(
        format=BACKUP_FORMAT, appliance_version=appliance.__version__,
        schema_version=copy.schema_version, created_at=str(created), counts=copy.counts,
        active_model=copy.active_model, models=tuple(kept), files=tuple(_inventory(out)))
    _write_json(out / MANIFEST_FILE, manifest.as_dict())
    return manifest


def _inventory(folder: Path) -> list[BackupFile]:
    out = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink() and path != folder / MANIFEST_FILE:
            digest, size = _hash_file(path)
            out.append(BackupFile(path.relative_to(folder).as_posix(), size, digest))
    return out


def _check_space(home: Path, where: Path) -> None:
    needed = sum(p.stat().st_size for p in (db_path(home), Path(f"{db_path(home)}.wal"))
                 if p.is_file())
    models = folders.models_dir(home)
    if models.is_dir():
        needed += sum(p.stat().st_size for p in models.rglob("*") if p.is_file())
    free = shutil.disk_usage(where).free
    if free - needed < RESERVE_BYTES:
        raise DiskFullError(
            f"only {free / 1e6:.0f} MB free where the backup goes, and it needs about "
            f"{needed / 1e6:.0f} MB plus {RESERVE_BYTES / 1e6:.0f} MB left over for the store",
            "free space there, or back up to another disk")


# -- reading and checking a backup -----------------------------------------------------------


def read_manifest(folder: Path) -> BackupManifest:
    """The backup's manifest, checked for shape (not the files: verify_backup)."""
    path = Path(folder) / MANIFEST_FILE
    if not Path(folder).is_dir():
        raise NotFoundError(f"{folder}: no such backup folder")
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise BackupError(f"{path} is missing: {folder} is not a backup made by "
                          "`appliance backup`") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"{path} cannot be read: {exc}") from None
    try:
        return _manifest_of(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise BackupError(f"{path}: {exc}") from None


def _manifest_of(raw: Any) -> BackupManifest:
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    if raw.get("format") != BACKUP_FORMAT:
        raise ValueError(f"format {raw.get('format')!r} is not {BACKUP_FORMAT!r}")
    schema = raw["schema_version"]
    if not isinstance(schema, int) or schema < 1:
        raise ValueError(f"schema_version {schema!r} is not a positive whole number")
    if schema > len(MIGRATIONS):
        made_by = raw.get("appliance_version")
        raise ValueError(f"schema version {schema} is newer than this appliance's "
                         f"{len(MIGRATIONS)}: restore with appliance {made_by} or newer")
    files = tuple(_file_of(f) for f in raw["files"])
    if DB_FILENAME not in {f.path for f in files}:
        raise ValueError(f"lists no {DB_FILENAME}")
    counts = raw.get("counts") or {}
    return BackupManifest(
        format=BACKUP_FORMAT, appliance_version=str(raw["appliance_version"]),
        schema_version=schema, created_at=str(raw["created_at"]),
        counts={str(k): int(v) for k, v in counts.items()},
        active_model=raw.get("active_model"), models=tuple(str(m) for m in raw["models"]),
        files=files)


def _file_of(raw: Any) -> BackupFile:
    if not isinstance(raw, dict):
        raise ValueError(f"file entry {raw!r} is not an object")
    path, size, digest = raw["path"], raw["bytes"], raw["sha256"]
    if not isinstance(path, str) or not _allowed(path):
        raise ValueError(f"file {path!r} is not a file a backup holds")
    if not isinstance(size, int) or size < 0:
        raise ValueError(f"file {path}: bytes {size!r} is not a size")
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise ValueError(f"file {path}: sha256 {digest!r} is not a SHA-256 digest")
    return BackupFile(path, size, digest)


def _allowed(path: str) -> bool:
    """Only what take_backup writes, and nothing that could land outside the home."""
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or "\\" in path or any(
            p in ("", ".", "..") for p in parts):
        return False
    if len(parts) == 1:
        return parts[0] in (DB_FILENAME, *HOME_FILES)
    return (parts[0] == folders.MODELS_DIR and len(parts) >= 3
            and not parts[1].startswith("."))


def verify_backup(folder: Path) -> BackupManifest:
    """Every file of the manifest present with its size and checksum (BackupError naming the
    first that is not)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    for entry in manifest.files:
        path = folder / entry.path
        if not path.is_file():
            raise BackupError(_problem(folder, entry, "is missing"))
        digest, size = _hash_file(path)
        _check(folder, entry, digest, size)
    return manifest


def _check(folder: Path, entry: BackupFile, digest: str, size: int) -> None:
    if size != entry.bytes:
        raise BackupError(_problem(folder, entry, f"has {size} bytes, the manifest says "
                                                  f"{entry.bytes} (truncated or changed)"))
    if digest != entry.sha256:
        raise BackupError(_problem(folder, entry, "does not match its sha256 in the manifest "
                                                  "(corrupt or changed)"))


def _problem(folder: Path, entry: BackupFile, what: str) -> str:
    return f"backup {folder}: {entry.path} {what}; nothing was restored"


# -- restoring -------------------------------------------------------------------------------


def daemon_owns(home: Path) -> bool:
    """Whether another process (a running daemon) holds the home's store."""
    path = db_path(home)
    if not path.is_file():
        return False
    try:
        connect(path, read_only=True).close()
    except StoreLockedError:
        return True
    except ApplianceError:
        return False  # unreadable: not held by a daemon, and about to be replaced anyway
    return False


def restore_backup(source: Path, home: Path, actor: str, force: bool = False) -> Restored:
    """Restore the backup in source as the home (audited in it as actor's). Refused while a
    daemon owns the home, and for a home that holds anything unless force (then it is moved
    aside, never deleted)."""
    source, home = Path(source), Path(home)
    if daemon_owns(home):
        raise StoreLockedError(f"a daemon owns {home} (its store is locked): stop `appliance "
                               "serve` before restoring over it")
    manifest = read_manifest(source)
    if home.exists() and not home.is_dir():
        raise ConflictError(f"{home} is a file, not a folder")
    occupied = home.is_dir() and any(home.iterdir())
    if occupied and not force:
        raise ConflictError(f"{home} is not empty: restore into a new or empty folder, or pass "
                            "--force to move what is there aside first")
    with _plainly("restoring the backup"):
        home.parent.mkdir(parents=True, exist_ok=True)
        tmp = home.parent / f".{home.name}.restoring-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            for entry in manifest.files:
                _copy_checked(source, entry, tmp)
            _settle(tmp, home, manifest, actor)
            aside = None
            if occupied:
                aside = _aside_name(home)
                os.rename(home, aside)
            elif home.exists():
                home.rmdir()
            os.rename(tmp, home)
        except BaseException:
            folders.remove_tree(tmp)
            raise
    return Restored(manifest, home, aside)


def _copy_checked(source: Path, entry: BackupFile, out: Path) -> None:
    """Copy one file, hashing as it goes; BackupError when it is not what the manifest says."""
    dest = out / entry.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    try:
        src = open(source / entry.path, "rb")  # noqa: SIM115 - closed below, with dest
    except FileNotFoundError:
        raise BackupError(_problem(source, entry, "is missing")) from None
    with src, open(dest, "wb") as fh:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            fh.write(chunk)
            size += len(chunk)
        fh.flush()
        os.fsync(fh.fileno())
    _check(source, entry, digest.hexdigest(), size)


def _settle(tmp: Path, home: Path, manifest: BackupManifest, actor: str) -> None:
    """Make the restored folder a home: the store migrated (a backup of an older release) and
    its model rows pointing into the new home, model folders sealed, the key owner-only."""
    with Store.open(tmp) as store:
        rehome_models(store, folders.models_dir(home))
        store.audit(actor, "restore", None, {"backup_created_at": manifest.created_at,
                                             "appliance_version": manifest.appliance_version})
    for version in manifest.models:
        folder = folders.models_dir(tmp) / version
        if folder.is_dir():
            folders.seal(folder)
    key = tmp / FIRST_KEY_FILE
    if key.is_file():
        os.chmod(key, 0o600)


def _aside_name(home: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = home.with_name(f"{home.name}.before-restore-{stamp}")
    if aside.exists():
        aside = home.with_name(f"{aside.name}-{uuid.uuid4().hex[:6]}")
    return aside


@contextmanager
def _plainly(doing: str) -> Iterator[None]:
    """The file system's refusals as one clear line: a full disk as DiskFullError, another
    OSError naming what failed. What was half-written is removed before this sees it."""
    try:
        yield
    except ApplianceError:
        raise
    except Exception as exc:
        full = disk_full(exc)
        if full is not None:
            raise DiskFullError(f"{full.problem} {doing}",
                                "nothing of it was kept; free space, then try again") from None
        if isinstance(exc, OSError):
            where = f" ({exc.filename})" if exc.filename else ""
            raise ApplianceError(f"{doing}: {exc.strerror or exc}{where}") from None
        raise


def _hash_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    with open(path, "w") as fh:
        fh.write(json.dumps(obj, indent=2) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
