"""Domain errors -> HTTP answers: the message a user can act on, never a traceback.

Every answer of 500 or 507 is logged (with the traceback when it is a bug): an error a client
saw is never one the daemon's log does not show. Details never carry an absolute path
(appliance.redact).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException

from appliance.errors import (
    ApplianceError,
    DiskFullError,
    IngestError,
    NotFoundError,
    StoredDataError,
    StoreLockedError,
    ValidationError,
    disk_full,
)
from appliance.jobs.runner import JobConflictError
from appliance.redact import without_paths

log = logging.getLogger("appliance.api")
# what the decoders (msgspec, json) say when a body nests deeper than the interpreter's stack
_TOO_DEEP = ("while deserializing", "while decoding a JSON")


def _home(request: Request[Any, Any, Any]) -> Path | None:
    daemon = getattr(request.app.state, "daemon", None)
    return daemon.config.home if daemon is not None else None


def _answer(request: Request[Any, Any, Any], status: int, detail: str) -> Response[Any]:
    text = without_paths(detail, _home(request))
    return Response(content={"status_code": status, "detail": text}, status_code=status,
                    media_type=MediaType.JSON)


def _where(request: Request[Any, Any, Any]) -> str:
    return f"{request.method} {request.url.path}"


def domain_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, NotFoundError):
        return _answer(request, 404, str(exc))
    if isinstance(exc, IngestError | ValidationError):
        return _answer(request, 422, str(exc))
    if isinstance(exc, JobConflictError):
        return _answer(request, 409, str(exc))
    if isinstance(exc, StoreLockedError):
        return _answer(request, 503, str(exc))
    if isinstance(exc, DiskFullError):
        return _disk_full(request, exc)
    if isinstance(exc, StoredDataError):
        log.error("%s: 500: %s", _where(request), exc)
        return _answer(request, 500, str(exc))
    # other deliberate refusals (a failing gate, nothing to roll back to, ...)
    return _answer(request, 409, str(exc))


def _disk_full(request: Request[Any, Any, Any], exc: DiskFullError) -> Response[Any]:
    log.error("%s: 507: %s", _where(request), exc)
    return _answer(request, 507, str(exc))


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Whatever no other handler took: a full disk (507), a body nested too deeply for the
    decoder (400), or a bug (500, logged with its traceback)."""
    full = disk_full(exc)
    if full is not None:
        return _disk_full(request, full)
    if isinstance(exc, RecursionError) and any(t in str(exc) for t in _TOO_DEEP):
        detail = ("the JSON body is nested too deeply to decode (about 1,000 levels or more); "
                  "no body this API takes nests more than a few levels")
        log.warning("%s: 400: %s", _where(request), detail)
        return _answer(request, 400, detail)
    if isinstance(exc, HTTPException):  # Litestar's own 500s (e.g. an answer it cannot encode)
        log.error("%s: %d: %s", _where(request), exc.status_code, exc.detail, exc_info=exc)
        return _answer(request, exc.status_code, exc.detail)
    log.error("%s: 500: unhandled %s", _where(request), type(exc).__name__, exc_info=exc)
    return _answer(request, 500, f"internal error ({type(exc).__name__}); the daemon's log has "
                                 "the details")


EXCEPTION_HANDLERS = {ApplianceError: domain_error, 500: internal_error}
