"""The Litestar app: thin controllers over appliance.services.daemon.Daemon.

create_app(daemon) is all a server (uvicorn in `appliance serve`) or a test client needs.
The OpenAPI schema (/schema/openapi.json: clients generate code from it) and GET /health
(liveness probes, watchdogs) answer without a key; every other route is behind
api.auth.require_key.
"""

from __future__ import annotations

import gc
import logging
import time

from litestar import Litestar, Router
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ASGIApp, Message, Receive, Scope, Send

import appliance
from api.auth import FailedLogins, require_key
from api.body_timeout import body_timeout
from api.errors import EXCEPTION_HANDLERS
from api.routes.backups import BackupController
from api.routes.drift import DriftController
from api.routes.holes import HoleController
from api.routes.jobs import JobController
from api.routes.keys import KeyController
from api.routes.models import ModelController
from api.routes.system import SystemController, health
from appliance.services.daemon import Daemon


def create_app(daemon: Daemon, close_on_shutdown: bool = False) -> Litestar:
    routes = Router(
        path="/",
        route_handlers=[HoleController, JobController, ModelController, SystemController,
                        DriftController, KeyController, BackupController],
        guards=[require_key],
        security=[{"BearerAuth": []}],
    )
    openapi = OpenAPIConfig(
        title="Drill appliance",
        version=appliance.__version__,
        description=("Rig-side depth estimation daemon: holes, labels, training jobs, model "
                     "versions. Every route but GET /health needs `Authorization: Bearer "
                     "<key>` (keys from "
                     "`appliance keys create NAME`); reads are open when the daemon runs with "
                     "--open-reads."),
        path="/schema",
        render_plugins=[JsonRenderPlugin()],
        components=Components(security_schemes={
            "BearerAuth": SecurityScheme(type="http", scheme="bearer",
                                         description="an API key"),
        }),
        use_handler_docstrings=False,
    )
    app = Litestar(
        route_handlers=[routes, health],  # health: open, outside the keyed routes
        dependencies={"daemon": Provide(lambda: daemon, use_cache=True, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        openapi_config=openapi,
        middleware=[_metrics_middleware, body_timeout(daemon.config.body_timeout_s)],
        request_max_body_size=daemon.config.max_body_bytes,
        on_startup=[lambda: _ready(daemon)],
        on_shutdown=[daemon.close] if close_on_shutdown else [],
        debug=False,
    )
    app.state.daemon = daemon
    app.state.logins = FailedLogins()
    return app


def _ready(daemon: Daemon) -> None:
    """Before the first connection: run the estimate path once on a burst of synthetic holes
    (the first real burst then finds its memory allocated), then move everything alive (the
    modules, the model, the app) out of the collector's reach, so the oldest generation is
    only what requests leave behind and a full collection never walks hundreds of thousands
    of objects while every request waits."""
    try:
        daemon.holes.warm()
    except Exception:  # only speed is at stake: serve anyway
        logging.getLogger("appliance.daemon").exception("warming the estimate path failed")
    gc.collect()
    gc.freeze()


def _metrics_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        method = scope["method"]
        start = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, recording_send)
        finally:
            daemon: Daemon = scope["app"].state.daemon
            route = scope.get("path_template") or "unmatched"
            daemon.metrics.observe_request(method, route, status,
                                           time.perf_counter() - start)

    return middleware
