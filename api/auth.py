"""API keys on every route: `Authorization: Bearer <key>`.

Mutating routes always need a valid key; read routes too, unless the daemon runs with
--open-reads. A presented key that is wrong is refused even on an open read: a client with a
stale key should find out. The 401 says nothing about why (missing, unknown, malformed).
"""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
UNAUTHORIZED = "a valid API key is required (Authorization: Bearer <key>)"


def bearer_key(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return key.strip()


def require_key(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    daemon = connection.app.state.daemon
    header = connection.headers.get("authorization")
    actor = None
    if header is not None:
        key = bearer_key(header)
        actor = daemon.authenticate(key) if key else None
        if actor is None:
            raise _unauthorized()
    elif connection.scope.get("method", "GET") in READ_METHODS and daemon.config.open_reads:
        actor = "anonymous"
    if actor is None:
        raise _unauthorized()
    connection.scope.setdefault("state", {})["actor"] = actor


def actor_of(connection: ASGIConnection) -> str:
    return str(connection.scope.get("state", {}).get("actor", "anonymous"))


def _unauthorized() -> NotAuthorizedException:
    return NotAuthorizedException(detail=UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
