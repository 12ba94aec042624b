"""Inputs into the store: every input is ingested, recognised as a duplicate, or rejected.

The one ingest orchestration: `appliance ingest` (files and folders, ingest_paths), POST /holes
and the daemon's watched folders (one upload's bytes, ingest_upload) all come through here.
Nothing is skipped silently: a duplicate is recognised by content hash and not stored twice, a
rejected input (it does not parse, or the store refuses its trace) is quarantined with its
reason, a JSON companion message (asset data used for metadata) is counted as used. Holes are
committed in groups, in halves down to one hole when the disk is short of room.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from appliance.errors import DiskFullError, IngestError, ValidationError
from appliance.ingest import parse_bytes
from appliance.ingest.discover import InputResult, iter_inputs
from appliance.redact import file_name
from appliance.store import Store
from appliance.trace import Trace


@dataclass
class IngestReport:
    ingested: list[dict[str, Any]] = field(default_factory=list)  # source, hole_id, samples
    duplicates: list[dict[str, Any]] = field(default_factory=list)  # source, hole_id
    rejected: list[dict[str, Any]] = field(default_factory=list)  # source, error
    companions: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, list[dict[str, Any]]]:
        return {"ingested": self.ingested, "duplicates": self.duplicates,
                "rejected": self.rejected}

    @property
    def n_files(self) -> int:
        return (len(self.ingested) + len(self.duplicates) + len(self.rejected)
                + len(self.companions))


# ("ingested" | "duplicate" | "rejected" | "companion" | "unstored", entry)
Outcome = tuple[str, dict[str, Any]]


class Upload(NamedTuple):
    hole_id: str
    created: bool  # False: the content was stored before (a duplicate)
    trace: Trace


def ingest_upload(store: Store, data: bytes, source: str, group: str | None) -> Upload:
    """One input's bytes, named source (a name, never read as a path), stored.

    A rejected input is quarantined with its bytes, then its error raised: IngestError when it
    does not parse, ValidationError when the store refuses its trace. DiskFullError when it
    does not fit. group: the source group for grouped cross-validation; by default the
    drilling unit the log came from."""
    try:
        trace = parse_bytes(data, source)
    except IngestError as exc:
        result = InputResult(source, group or "api", None, exc, raw=data)
    else:
        result = InputResult(source, group or trace.meta.drill_serial or "api", trace, None,
                             raw=data)
    kind, entry = _outcomes(store, [result])[0]
    if kind == "unstored":
        raise entry["error"]
    if kind == "rejected":
        raise result.error or ValidationError(entry["error"])
    assert result.trace is not None  # stored, so it parsed
    return Upload(entry["hole_id"], kind == "ingested", result.trace)


def _trace_of(result: InputResult) -> Trace | None:
    """The trace to store of a parsed input; None: nothing to store (a companion, an error)."""
    return None if result.companion or result.error is not None else result.trace


def _outcomes(store: Store, results: list[InputResult]) -> list[Outcome]:
    """Outcomes of results in order; their traces are stored in one transaction (in smaller
    ones when the disk has no room for it all). From the first input that did not fit on the
    disk on, every input is "unstored" (with the DiskFullError as its error)."""
    traces: list[tuple[Trace, str | None]] = [
        (trace, r.group) for r in results if (trace := _trace_of(r)) is not None]
    stored = iter(store.add_holes(traces) if traces else [])
    out: list[Outcome] = []
    full: DiskFullError | None = None
    for result in results:
        if full is not None:
            out.append(("unstored", {"source": result.source, "error": full}))
            continue
        if result.companion:
            out.append(("companion", {"source": result.source}))
            continue
        trace = _trace_of(result)
        if trace is None:
            error = result.error or IngestError(result.source, "the parser returned no trace")
            try:
                out.append(_reject(store, result, error))
            except DiskFullError as exc:  # no room for its quarantine entry either
                full = exc
                out.append(("unstored", {"source": result.source, "error": full}))
            continue
        got = next(stored)
        if isinstance(got, DiskFullError):
            full = got
            out.append(("unstored", {"source": result.source, "error": full}))
        elif isinstance(got, ValidationError):
            out.append(_reject(store, result, got))
        elif got[1]:
            out.append(("ingested", {"source": result.source, "hole_id": got[0],
                                     "samples": trace.n_samples}))
        else:
            out.append(("duplicate", {"source": result.source, "hole_id": got[0]}))
    return out


def _named(result: InputResult) -> InputResult:
    """A file's trace under its file name: a hole's source is what the file is called, never
    where it lay on this box (that is for the messages of the run, which name the path)."""
    trace = result.trace
    if trace is None or file_name(trace.meta.source) == trace.meta.source:
        return result
    meta = replace(trace.meta, source=file_name(trace.meta.source))
    return replace(result, trace=replace(trace, meta=meta))


def _reject(store: Store, result: InputResult, error: Exception) -> Outcome:
    message = str(error)
    data = result.raw if result.raw is not None else _read_if_file(result.source)
    store.quarantine(result.source, message, data)
    return "rejected", {"source": result.source, "error": message}


def _read_if_file(source: str) -> bytes | None:
    """The rejected input's bytes when the source names a readable file (for hash/size)."""
    try:
        path = Path(source)
        return path.read_bytes() if path.is_file() else None
    except (OSError, ValueError):
        return None


def ingest_paths(
    store: Store,
    paths: Iterable[Path],
    on_outcome: Callable[[str, dict[str, Any]], None] | None = None,
    prefetch: int = 8,
    batch: int = 32,
    batch_seconds: float = 0.5,
) -> IngestReport:
    """Ingest every file under paths (see appliance.ingest.discover for what is read).

    Holes are committed in groups of up to `batch` (or every `batch_seconds`): each
    hole is whole or absent, but one fsync serves the group, which is what bounds a
    per-hole commit on a real disk. An input is reported only once it is committed;
    a crash loses at most the uncommitted group, and ingesting again completes it
    (duplicates are recognised). batch=1 commits every hole on its own.
    With prefetch > 0 a helper thread parses up to that many files ahead.

    A group the disk has no room for is committed in halves, down to one hole: what fits is
    stored and reported, then DiskFullError says how far the run got.
    """
    results: Iterator[InputResult] = (_named(r) for r in iter_inputs([Path(p) for p in paths]))
    if prefetch > 0:
        results = _prefetched(results, prefetch)
    report = IngestReport()
    pending: list[InputResult] = []
    started = 0.0

    def flush() -> None:
        outcomes = _outcomes(store, pending)
        unstored = [entry for kind, entry in outcomes if kind == "unstored"]
        for kind, entry in outcomes:
            if kind == "unstored":
                break
            getattr(report, _REPORT_LIST[kind]).append(
                entry["source"] if kind == "companion" else entry
            )
            if on_outcome is not None:
                on_outcome(kind, entry)
        pending.clear()
        if unstored:
            full: DiskFullError = unstored[0]["error"]
            raise DiskFullError(
                full.problem,
                f"{len(report.ingested)} hole(s) stored by this run; {unstored[0]['source']} "
                "and the inputs after it are not: free space on that disk, then run the same "
                "ingest again (what is stored is recognised)") from full

    walk = iter(results)
    try:
        while True:
            try:
                result = next(walk)
            except StopIteration:
                break
            except BaseException:
                flush()  # keep what was parsed before the walk broke
                raise
            if not pending:
                started = time.monotonic()
            pending.append(result)
            if len(pending) >= max(1, batch) or time.monotonic() - started >= batch_seconds:
                flush()
        flush()
    finally:
        close = getattr(walk, "close", None)
        if close is not None:
            close()  # stops the parse-ahead thread now, not at garbage collection
    return report


_REPORT_LIST = {"ingested": "ingested", "duplicate": "duplicates", "rejected": "rejected",
                "companion": "companions"}



def _prefetched(items: Iterator[InputResult], depth: int) -> Iterator[InputResult]:
    """items, produced by a daemon thread up to depth ahead; its exceptions re-raised here."""
    # None ends the items; an exception is the producer's, raised here
    buffer: queue.Queue[InputResult | BaseException | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: InputResult | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False  # the consumer has gone

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(None)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    worker = threading.Thread(target=produce, name="ingest-parse", daemon=True)
    worker.start()
    try:
        while True:
            item = buffer.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)
