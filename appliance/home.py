"""Where the appliance keeps its state: --home, then $APPLIANCE_HOME, then ./appliance-home."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = "appliance-home"
FIRST_KEY_FILE = "admin.key"  # the daemon's first admin key, written when no key exists
BACKUPS_DIR = "backups"  # where the daemon writes backups it is asked for (never backed up)


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    if home is not None:
        return Path(home).expanduser().resolve()
    env = os.environ.get("APPLIANCE_HOME")
    if env:
        return Path(env).expanduser().resolve()
    return Path(DEFAULT_HOME).resolve()


def repo_root() -> Path:
    """The source checkout (models/baseline lives there in a development install)."""
    return Path(__file__).resolve().parent.parent


def baseline_model_dir() -> Path:
    return repo_root() / "models" / "baseline"
