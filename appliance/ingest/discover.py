"""Walking files and folders as `appliance ingest` does.

A folder is walked recursively in sorted order for .xls and .json files (any case); JSON
messages of one folder are parsed together as one hole's messages, so that a Result and
its asset companions join their Trace. A JSON file that is not JSON at all (a ';' Datas
table named .json) is tried as Setitec text on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import IngestError
from appliance.ingest.mqtt import read_message_folder
from appliance.ingest.setitec import parse_setitec
from appliance.trace import Trace

SUFFIXES = (".xls", ".json")


@dataclass
class InputResult:
    source: str  # the file path
    group: str  # the name of the file's parent folder: the source group for grouped CV
    trace: Trace | None
    error: IngestError | None
    companion: bool = False  # a metadata message used by a trace, not rejected
    raw: bytes | None = None  # the input's bytes when it came as bytes, not as a file


def iter_inputs(paths: list[Path]) -> Iterator[InputResult]:
    """One InputResult per file found (a trace, an error, or a companion marker)."""
    for path in paths:
        path = Path(path)
        if path.is_dir():
            yield from _walk(path)
        elif path.is_file():
            yield from _folder_results(path.parent, [path], only=path)
        else:
            yield InputResult(str(path), path.parent.name, None,
                              IngestError(str(path), "no such file or folder"))


def parse_file(path: Path) -> Trace:
    """The trace of one file; a JSON message is joined with its siblings in the folder."""
    path = Path(path)
    if not path.is_file():
        raise IngestError(str(path), "no such file")
    for result in _folder_results(path.parent, [path], only=path):
        if result.trace is not None:
            return result.trace
        if result.error is not None:
            raise result.error
        raise IngestError(str(path), "a companion message holds no samples; it adds metadata "
                                     "to the trace in the same folder")
    raise IngestError(str(path), "nothing to parse")


def _walk(root: Path) -> Iterator[InputResult]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    folders: dict[Path, list[Path]] = {}
    for path in files:
        folders.setdefault(path.parent, []).append(path)
    for folder in sorted(folders):
        yield from _folder_results(folder, folders[folder])


def _read(path: Path) -> bytes | IngestError:
    try:
        return path.read_bytes()
    except OSError as exc:
        return IngestError(str(path), f"cannot read: {exc.strerror or exc}")


def _is_json(data: bytes) -> bool:
    return data.lstrip(b" \t\r\n\xef\xbb\xbf")[:1] in (b"{", b"[")


def _folder_results(folder: Path, files: list[Path],
                    only: Path | None = None) -> Iterator[InputResult]:
    """Results for `files` of one folder; JSON messages are joined with every sibling."""
    group = folder.name
    results: dict[Path, InputResult] = {}
    messages: dict[str, bytes] = {}
    for path in files:
        data = _read(path)
        if isinstance(data, IngestError):
            results[path] = InputResult(str(path), group, None, data)
        elif path.suffix.lower() == ".json" and _is_json(data):
            messages[path.name] = data
        else:
            results[path] = _setitec(path, data, group)
    if messages and only is not None:
        # An explicit message file still needs its Result/companions from the same folder.
        for sibling in sorted(folder.iterdir()):
            if sibling.suffix.lower() == ".json" and sibling.name not in messages \
                    and sibling.is_file():
                data = _read(sibling)
                if isinstance(data, bytes) and _is_json(data):
                    messages[sibling.name] = data
    if messages:
        for entry in read_message_folder(messages, str(folder)):
            path = folder / entry.name
            results[path] = InputResult(str(path), group, entry.trace, entry.error,
                                        entry.companion)
    for path in sorted(results):
        if only is None or path == only:
            yield results[path]


def _setitec(path: Path, data: bytes, group: str) -> InputResult:
    try:
        return InputResult(str(path), group, parse_setitec(data, str(path)), None)
    except IngestError as exc:
        return InputResult(str(path), group, None, exc)
