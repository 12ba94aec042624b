"""Drift per drill: the watch's state, and an operator's acknowledgement (reset)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.params import Parameter

from api.auth import actor_of, needs
from api.routes._docs import DaemonDep, errors
from api.schemas import DriftOut
from appliance.records import DrillDrift

DrillParam = Annotated[str, Parameter(description="the drill's serial ('unknown' without one)",
                                      max_length=200)]


class DriftController(Controller):
    path = "/drift"
    tags = ["drift"]

    @get("/", operation_id="getDrift", sync_to_thread=True,
         summary="Each drill's drift watch: learning, ok or alarm, with its signals",
         responses=errors(401))
    def drift(self, daemon: DaemonDep) -> DriftOut:
        return DriftOut(drills=daemon.drift.drills())

    @post("/{drill:str}/reset", operation_id="resetDrift", status_code=200, sync_to_thread=True,
          summary="Acknowledge a drill's state: its reference restarts from the next hole "
                  "(audited)", responses=errors(401, 403, 404),
          opt=needs("operator"))
    def reset(self, request: Request[Any, Any, Any], daemon: DaemonDep,
              drill: DrillParam) -> DrillDrift:
        return daemon.drift.reset(drill, actor_of(request))
