"""Health (open, and its details behind a key), Prometheus metrics and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from litestar import Controller, Response, get
from litestar.params import Parameter
from prometheus_client import CONTENT_TYPE_LATEST

from api.auth import needs
from api.routes._docs import DaemonDep, errors
from api.schemas import utc_text
from appliance.records import AuditEntry, BusStatus, Health, HealthDetails


@get("/health", operation_id="getHealth", sync_to_thread=True, tags=["system"],
     summary="Up or not, version, active model: open, for liveness probes and watchdogs "
             "(details: GET /health/details, with a key)")
def health(daemon: DaemonDep) -> Health:
    """Mounted outside the keyed routes (api.app): a probe holds no key."""
    return daemon.health()


class SystemController(Controller):
    path = "/"
    tags = ["system"]

    @get("/health/details", operation_id="getHealthDetails", sync_to_thread=True,
         summary="Store, active model, running job, disk space", responses=errors(401))
    def health_details(self, daemon: DaemonDep) -> HealthDetails:
        return daemon.health_details()

    @get("/mqtt", operation_id="getMqtt", sync_to_thread=True,
         summary="The rig's MQTT bus: connected or not, last message, messages waiting for "
                 "their partners, answers not yet acknowledged, counts by outcome",
         responses=errors(401))
    def mqtt(self, daemon: DaemonDep) -> BusStatus:
        return daemon.bus_status()

    @get("/metrics", operation_id="getMetrics", sync_to_thread=True,
         media_type=CONTENT_TYPE_LATEST, summary="Prometheus text exposition",
         responses=errors(401))
    def metrics(self, daemon: DaemonDep) -> Response[bytes]:
        # the scraper reads the format version from the content type, so it is the library's
        # own; set as a header, since Litestar would append a second charset to a text/ type
        return Response(daemon.metrics_exposition(), media_type=CONTENT_TYPE_LATEST,
                        headers={"content-type": CONTENT_TYPE_LATEST})

    @get("/audit", operation_id="listAudit", sync_to_thread=True,
         summary="Audit log (who did what), newest first", responses=errors(401, 403),
          opt=needs("operator"))
    def audit(
        self, daemon: DaemonDep,
        since: Annotated[datetime | None, Parameter(description="ISO 8601")] = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        offset: Annotated[int, Parameter(ge=0, le=10_000_000)] = 0,
    ) -> list[AuditEntry]:
        return daemon.audit_log(utc_text(since), limit, offset)
