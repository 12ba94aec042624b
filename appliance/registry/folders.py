"""Model folders on disk under `<home>/models/`: copy in via a temp dir, seal, rename, remove.

A registered version's folder is read-only (files 0444, dirs 0555): nothing may change a
model after its hashes were checked. Temp folders start with TMP_PREFIX so that recovery can
tell them from versions (a version name never starts with a dot).
"""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from pathlib import Path

MODELS_DIR = "models"
TMP_PREFIX = ".tmp-"


def models_dir(home: Path) -> Path:
    return Path(home) / MODELS_DIR


def temp_dir_for(root: Path, version: str) -> Path:
    return root / f"{TMP_PREFIX}{version}-{uuid.uuid4().hex[:8]}"


def copy_in(source: Path, dest: Path) -> None:
    """Copy the folder's files (not links, not anything outside it) to dest."""
    dest.mkdir(parents=True)
    for path in sorted(Path(source).rglob("*")):
        rel = path.relative_to(source)
        if path.is_symlink():
            continue  # a link could point anywhere; the manifest lists plain files only
        if path.is_dir():
            (dest / rel).mkdir(exist_ok=True)
        elif path.is_file():
            shutil.copyfile(path, dest / rel)
            _fsync_file(dest / rel)


def seal(folder: Path) -> None:
    """Make the folder read-only, deepest entries first."""
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        mode = 0o555 if path.is_dir() else 0o444
        os.chmod(path, mode)
    os.chmod(folder, 0o555)


def remove_tree(folder: Path) -> None:
    """Delete a (possibly sealed) folder."""
    if not folder.exists():
        return
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            os.chmod(path, stat.S_IRWXU)
    shutil.rmtree(folder)


def publish(tmp: Path, final: Path) -> None:
    """Atomically rename the finished temp folder to its final name (same file system)."""
    # The parent must be writable for the rename; the version folder itself stays sealed.
    os.rename(tmp, final)
    _fsync_dir(final.parent)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the rename is still atomic
    finally:
        os.close(fd)
