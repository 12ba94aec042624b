"""The exceptions the domain raises on purpose; anything else is a bug."""

from __future__ import annotations

import errno
import os
import re


class ApplianceError(Exception):
    """Base of every error the appliance reports to a user as a clear message."""


class IngestError(ApplianceError):
    """An input could not be turned into a Trace.

    The message always names the source, where in it (line or field) and what was wrong,
    so that an operator can find and fix the file without reading a traceback.
    """

    def __init__(self, source: str, problem: str, where: str | None = None) -> None:
        self.source = source
        self.problem = problem
        self.where = where
        location = f" ({where})" if where else ""
        super().__init__(f"{source}{location}: {problem}")

    def __reduce__(self) -> tuple[type[IngestError], tuple[str, str, str | None]]:
        # rebuilt from its parts when it crosses to another process (an estimate worker
        # that parsed an upload), not from the message alone
        return (IngestError, (self.source, self.problem, self.where))


class StoreLockedError(ApplianceError):
    """Another process holds the DuckDB file (usually a running `appliance serve`)."""


class NotFoundError(ApplianceError):
    """A hole, model, job or label that was asked for does not exist."""


class ValidationError(ApplianceError):
    """A value given by a user or client breaks a rule (order of points, range, ...)."""


class UsageError(ValidationError):
    """An option this box cannot honour (no GPU, Ray not installed): exit 2, like a typo."""


class ConflictError(ApplianceError):
    """The request collides with what exists (e.g. a key of that name)."""


class StoredDataError(ApplianceError):
    """What the store holds cannot be read back (a damaged file, a block of an unknown
    codec): not the caller's fault. HTTP 500, logged; the message names the hole."""


class DiskFullError(ApplianceError):
    """The disk holding the home (or the user's quota on it) is full. The message names what
    was being written; nothing half-written is kept. CLI exit 4, HTTP 507.

    problem: what failed ("no space left on device writing <file>"); then: what was done and
    what to do about it."""

    exit_code = 4

    def __init__(self, problem: str, then: str = "free space on that disk, then try again"
                 ) -> None:
        self.problem = problem
        super().__init__(f"{problem}: {then}")


# what the OS says, and what DuckDB (which carries only text) repeats after its own words
_NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_NO_SPACE_TEXTS = ("No space left on device", "Disk quota exceeded")
_WRITING = re.compile(r'(?:file|directory) "([^"]+)"')


def disk_full(exc: BaseException | None) -> DiskFullError | None:
    """exc, or what it was raised from, as a DiskFullError when the disk ran full: an OSError
    with ENOSPC/EDQUOT, or a DuckDB error whose text says so (None: it is something else)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFullError):
            return exc
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE_ERRNOS:
            what = f" writing {exc.filename}" if exc.filename else ""
            return DiskFullError(f"{os.strerror(exc.errno).lower()}{what}")
        text = str(exc)
        said = next((t for t in _NO_SPACE_TEXTS if t in text), None)
        if said is not None:
            found = _WRITING.search(text)
            what = f" writing {found.group(1)}" if found else ""
            return DiskFullError(f"{said.lower()}{what}")
        exc = exc.__cause__ or exc.__context__
    return None
