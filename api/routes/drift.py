"""Drift per drill: the watch's state, and an operator's acknowledgement (reset)."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.params import Parameter

from api.auth import actor_of, needs
from api.routes._docs import DaemonDep, errors
from api.schemas import DriftOut, DrillDriftOut, to_struct
from appliance.monitor import DrillDrift

DrillParam = Annotated[str, Parameter(description="the drill's serial ('unknown' without one)",
                                      max_length=200)]


def drill_out(d: DrillDrift) -> DrillDriftOut:
    body = asdict(d)
    for sig in body["signals"]:  # JSON has no NaN: a statistic not yet computed is null
        if not math.isfinite(sig["statistic"]):
            sig["statistic"] = None
    return to_struct(DrillDriftOut, body)


class DriftController(Controller):
    path = "/drift"
    tags = ["drift"]

    @get("/", operation_id="getDrift", sync_to_thread=True,
         summary="Each drill's drift watch: learning, ok or alarm, with its signals",
         responses=errors(401))
    def drift(self, daemon: DaemonDep) -> DriftOut:
        return DriftOut(drills=[drill_out(d) for d in daemon.drift.drills()])

    @post("/{drill:str}/reset", operation_id="resetDrift", status_code=200, sync_to_thread=True,
          summary="Acknowledge a drill's state: its reference restarts from the next hole "
                  "(audited)", responses=errors(401, 403, 404),
          opt=needs("operator"))
    def reset(self, request: Request[Any, Any, Any], daemon: DaemonDep,
              drill: DrillParam) -> DrillDriftOut:
        return drill_out(daemon.drift.reset(drill, actor_of(request)))
