"""The exceptions the domain raises on purpose; anything else is a bug."""

from __future__ import annotations


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


class StoreLockedError(ApplianceError):
    """Another process holds the DuckDB file (usually a running `appliance serve`)."""


class NotFoundError(ApplianceError):
    """A hole, model, job or label that was asked for does not exist."""


class ValidationError(ApplianceError):
    """A value given by a user or client breaks a rule (order of points, range, ...)."""


class ConflictError(ApplianceError):
    """The request collides with what exists (e.g. a key of that name)."""
