"""Domain errors -> HTTP answers: the message a user can act on, never a traceback."""

from __future__ import annotations

from litestar import MediaType, Request, Response

from appliance.errors import (
    ApplianceError,
    IngestError,
    NotFoundError,
    StoreLockedError,
    ValidationError,
)
from appliance.jobs.runner import JobConflictError


def _answer(status: int, detail: str) -> Response:
    return Response(content={"status_code": status, "detail": detail}, status_code=status,
                    media_type=MediaType.JSON)


def domain_error(_: Request, exc: Exception) -> Response:
    if isinstance(exc, NotFoundError):
        return _answer(404, str(exc))
    if isinstance(exc, IngestError | ValidationError):
        return _answer(422, str(exc))
    if isinstance(exc, JobConflictError):
        return _answer(409, str(exc))
    if isinstance(exc, StoreLockedError):
        return _answer(503, str(exc))
    # other deliberate refusals (a failing gate, nothing to roll back to, ...)
    return _answer(409, str(exc))


EXCEPTION_HANDLERS = {ApplianceError: domain_error}
