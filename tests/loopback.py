"""Loopback helpers of the tests: a free port, an ASGI app served by uvicorn in a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_in_thread(app: Any, what: str = "the app") -> Iterator[str]:
    """`app` over real HTTP on a free loopback port (uvicorn in a thread, no lifespan); its
    base URL. uvicorn leaves the logging set-up alone, so pytest's caplog still sees the
    app's log."""
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=free_port(),
                                           log_level="warning", log_config=None,
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, f"{what} did not start serving"
        time.sleep(0.02)
    try:
        yield f"http://{HOST}:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
