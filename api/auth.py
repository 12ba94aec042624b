"""API keys with roles on every route: `Authorization: Bearer <key>`.

Mutating routes always need a valid key; read routes too, unless the daemon runs with
--open-reads (then anonymous reads act as `integration`). A presented key that is wrong is
refused even on an open read: a client with a stale key should find out. The 401 says nothing
about why (missing, unknown, malformed); a 403 names the role the route needs.

Wrong keys are logged with the client's address, counted in /metrics, and a client that sends
too many of them is held back for a while (429): guessing keys costs time, not just CPU.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import (
    NotAuthorizedException,
    PermissionDeniedException,
    TooManyRequestsException,
)
from litestar.handlers.base import BaseRouteHandler

from appliance.services.keys import KeyIdentity, Role, as_role

log = logging.getLogger("appliance.auth")
ANONYMOUS = KeyIdentity("anonymous", "integration")
MAX_FAILURES = 10  # wrong keys per client within WINDOW_S before it is held back
WINDOW_S = 60.0


def needs(role: Role) -> dict[str, Role]:
    """A route handler's `opt`: the least role its key must have (default integration)."""
    return {"role": role}


class FailedLogins:
    """Wrong keys per client address in a sliding window."""

    def __init__(self, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._lock = threading.Lock()
        self._seen: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._seen.setdefault(client, deque())
        while times and now - times[0] > self.window_s:
            times.popleft()
        return times

    def held_back(self, client: str) -> float:
        """Seconds until the client may try again (0: it may)."""
        now = time.monotonic()
        with self._lock:
            times = self._recent(client, now)
            if len(times) < self.max_failures:
                return 0.0
            return max(0.0, self.window_s - (now - times[0]))

    def failed(self, client: str) -> int:
        now = time.monotonic()
        with self._lock:
            times = self._recent(client, now)
            times.append(now)
            if len(self._seen) > 10_000:  # forget quiet clients rather than grow forever
                for c in [c for c, t in self._seen.items() if not t]:
                    del self._seen[c]
            return len(times)

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
UNAUTHORIZED = "a valid API key is required (Authorization: Bearer <key>)"


def bearer_key(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return key.strip()


async def require_key(connection: ASGIConnection[Any, Any, Any, Any],
                      route_handler: BaseRouteHandler) -> None:
    """Async, so that Litestar runs it on the event loop: a sync guard went through a worker
    thread on every request (~13 % of the daemon's interpreter lock under POST /estimate
    load); only a key not yet in memory is looked up in the store, on a thread."""
    daemon = connection.app.state.daemon
    logins: FailedLogins = connection.app.state.logins
    client = connection.client.host if connection.client else "unknown"
    header = connection.headers.get("authorization")
    who: KeyIdentity | None = None
    if header is not None:
        wait = logins.held_back(client)
        if wait > 0:
            daemon.metrics.count_auth_failure("held_back")
            raise TooManyRequestsException(
                detail=f"too many wrong API keys from {client}; try again in {wait:.0f} s",
                headers={"Retry-After": str(int(wait) + 1)})
        key = bearer_key(header)
        who = None
        if key:
            who = daemon.known_key(key) or await asyncio.to_thread(daemon.identify, key)
        if who is None:
            n = logins.failed(client)
            daemon.metrics.count_auth_failure("wrong_key")
            log.warning("wrong API key from %s on %s %s (%d in the last %.0f s)", client,
                        connection.scope.get("method", "?"), connection.url.path, n,
                        logins.window_s)
            raise _unauthorized()
    elif connection.scope.get("method", "GET") in READ_METHODS and daemon.config.open_reads:
        who = ANONYMOUS
    if who is None:
        raise _unauthorized()
    needed: Role = (route_handler.opt or {}).get("role", "integration")
    if not who.may(needed):
        raise PermissionDeniedException(
            detail=f"{connection.scope.get('method', '?')} {connection.url.path} needs a key "
                   f"with the {needed!r} role; key {who.name!r} has {who.role!r}")
    state = connection.scope.setdefault("state", {})
    state["actor"] = who.name
    state["role"] = who.role


def role_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Role:
    return as_role(connection.scope.get("state", {}).get("role", "integration"))


def actor_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    return str(connection.scope.get("state", {}).get("actor", "anonymous"))


def _unauthorized() -> NotAuthorizedException:
    return NotAuthorizedException(detail=UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
