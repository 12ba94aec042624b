"""What the appliance shows of the box's filesystem to its clients: names, never absolute paths.

A supervisory system or an operator's terminal has no business knowing where the home, the
logs or the Python install live. A hole's source is a file name; a folder under the home is
shown relative to it (`models/cand-1`, `jobs/ab12/candidate`); any other absolute path by its
last part. Free text that carries a path (a job's log tail, a gate's summary, an error) is
shown the same way. The CLI, which runs on the box for its own user, keeps full paths.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
from pathlib import Path, PurePosixPath
from typing import Any

# a "/" that does not continue a word, a number, a URL or another path, then its parts
_ABSOLUTE = re.compile(r"(?<![\w.~:/\\-])/[^\s/'\"`<>|,;()\[\]{}]+(?:/[^\s/'\"`<>|,;()\[\]{}]*)*")
_WINDOWS = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")


def file_name(path: str) -> str:
    """The last part of a path, POSIX or Windows ('' stays '')."""
    text = path.strip().replace("\\", "/").rstrip("/")
    return posixpath.basename(text) or text


def is_absolute(path: str) -> bool:
    return path.startswith("/") or bool(_WINDOWS.match(path))


def shown_source(source: str) -> str:
    """A hole's source as clients see it: a file name where an absolute path was stored (the
    rows of older versions), anything else (`rig3/V4_001.xls`, `mqtt:...`) as it is."""
    return file_name(source) if is_absolute(source) else source


def shown_path(path: str | Path, home: Path | None) -> str:
    """An absolute path as clients see it: relative to the home when under it, else its last
    part."""
    pure = PurePosixPath(str(path))
    if home is not None:
        try:
            rel = pure.relative_to(PurePosixPath(str(home)))
        except ValueError:
            pass
        else:
            return str(rel)
    return pure.name or str(path)


@functools.cache
def _top_folders() -> frozenset[str]:
    try:
        return frozenset(os.listdir("/"))
    except OSError:
        return frozenset()


def without_paths(text: str, home: Path | None) -> str:
    """Free text with every absolute filesystem path shown as shown_path does. A path counts
    as one when it starts in a folder this box has at its root (/tmp, /home, /usr, ...), so a
    route named in a message (`DELETE /jobs/{id}`) stays as it is."""
    if "/" not in text:
        return text

    def shown(match: re.Match[str]) -> str:
        path = match.group(0)
        if path.split("/", 2)[1] not in _top_folders():
            return path
        return shown_path(path, home)

    return _ABSOLUTE.sub(shown, text)


def scrubbed(value: Any, home: Path | None) -> Any:
    """A JSON-like value (dicts, lists, strings) with without_paths applied to every string."""
    if isinstance(value, str):
        return without_paths(value, home)
    if isinstance(value, dict):
        return {k: scrubbed(v, home) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrubbed(v, home) for v in value]
    return value
