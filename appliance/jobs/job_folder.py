"""A job's folder, `<home>/jobs/<job_id>/`: what a job writes there and what outlives it.

While a job runs (or waits to resume after a daemon restart) the folder holds the dataset
snapshot (`dataset/`), the training child's candidate model folder (`candidate/`), its fold
checkpoints (`.candidate.work/`, appliance.train.train.work_dir_for), an export cut short
(`.candidate.tmp-<pid>/`), the child's output (`train.log`) and, for a search, `search/`
(trials.csv, best.json, optuna.journal). Once the job has ended only the log and a search's
folder are kept: they are small, and `GET /jobs/{id}/trials` reads the search's.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

DATASET = "dataset"
LOG = "train.log"
CANDIDATE = "candidate"
SEARCH = "search"
KEPT = frozenset({LOG, SEARCH})


def out_dir(work: Path, search: bool) -> Path:
    """Where the child writes: a search's folder, or the candidate model folder."""
    return work / (SEARCH if search else CANDIDATE)


def remove_leftovers(work: Path) -> int:
    """Everything in an ended job's folder but its log and search folder removed; the bytes
    freed (0 when there was nothing to remove)."""
    try:
        entries = [e for e in os.scandir(work) if e.name not in KEPT]
    except FileNotFoundError:
        return 0
    freed = 0
    for entry in entries:
        path = Path(entry.path)
        freed += _size(path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return freed


def _size(path: Path) -> int:
    if not path.is_dir() or path.is_symlink():
        try:
            return path.lstat().st_size
        except OSError:
            return 0
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue  # gone meanwhile: nothing to free
    return total
