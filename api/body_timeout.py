"""A request's body must arrive in time: 408, logged, and the connection closed after.

uvicorn bounds idle keep-alive connections but not a body in flight: a client (a key holder
too) that sends its headers with a Content-Length and then trickles or stalls the body held
its connection and buffer for ever. The time runs from the handler's first read of the body to
its last chunk, so a trickle is cut off as surely as a stall.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

log = logging.getLogger("appliance.api")


def body_timeout(limit_s: float) -> Callable[[ASGIApp], ASGIApp]:
    """Middleware (Litestar's `middleware=[...]` form): a body not in within limit_s -> 408."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            method = scope["method"]
            loop = asyncio.get_running_loop()
            deadline: float | None = None
            complete = False

            async def timed_receive() -> ReceiveMessage:
                nonlocal deadline, complete
                if complete:  # e.g. a stream listening for the client's disconnect
                    return await receive()
                if deadline is None:
                    deadline = loop.time() + limit_s
                try:
                    message = await asyncio.wait_for(receive(), deadline - loop.time())
                except TimeoutError:
                    client = scope.get("client")
                    who = client[0] if client else "unknown"
                    log.warning("%s %s from %s: 408: the request body did not arrive within "
                                "%g s", method, scope["path"], who, limit_s)
                    raise HTTPException(
                        status_code=408,
                        detail=f"the request body did not arrive within {limit_s:g} s",
                        headers={"Connection": "close"}) from None
                if message["type"] != "http.request" or not message.get("more_body", False):
                    complete = True
                return message

            await app(scope, timed_receive, send)

        return middleware

    return wrap
