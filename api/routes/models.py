"""Model versions: list, inspect, activate (gated), roll back, activation history."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post, put
from litestar.exceptions import PermissionDeniedException
from litestar.params import JSONBody, Parameter

from api.auth import actor_of, needs, role_of
from api.routes._docs import DaemonDep, errors
from api.schemas import ActivateIn, ActiveModelOut, RollbackIn, ShadowIn
from appliance.records import Activation, ModelDetail, ModelSummary, ShadowReport

VersionParam = Annotated[str, Parameter(description="model version", max_length=200)]


class ModelController(Controller):
    path = "/models"
    tags = ["models"]

    @get("/", operation_id="listModels", sync_to_thread=True,
         summary="Every registered model version", responses=errors(401))
    def list_models(self, daemon: DaemonDep) -> list[ModelSummary]:
        return daemon.models.versions()

    @get("/active", operation_id="getActiveModel", sync_to_thread=True,
         summary="The version serving estimates (404 when only the rule-based estimator runs)",
         responses=errors(401, 404))
    def active(self, daemon: DaemonDep) -> ActiveModelOut:
        model = daemon.models.active()
        live = next((a for a in daemon.drift.live_accuracy()
                     if a.model_version == model.version), None)
        return ActiveModelOut(
            **msgspec.structs.asdict(model),
            live_accuracy=live)

    @get("/activations", operation_id="listActivations", sync_to_thread=True,
         summary="Activation and rollback history, newest first", responses=errors(401))
    def activations(self, daemon: DaemonDep,
                    limit: Annotated[int, Parameter(ge=1, le=1000)] = 100
                    ) -> list[Activation]:
        return daemon.models.activations(limit)

    @post("/rollback", operation_id="rollbackModel", status_code=200, sync_to_thread=True,
          summary="Re-activate the previous version (or a named earlier one)",
          responses=errors(401, 403, 404, 409),
          opt=needs("operator"))
    def rollback(self, request: Request[Any, Any, Any], daemon: DaemonDep,
                 data: JSONBody[RollbackIn]) -> ModelSummary:
        return daemon.models.rollback(data.version, actor_of(request), data.reason)

    @get("/shadow", operation_id="getShadowReport", sync_to_thread=True,
         summary="The model scored in shadow and how it compares with the served one",
         responses=errors(401))
    def shadow_report(self, daemon: DaemonDep) -> ShadowReport:
        return daemon.models.shadow_report()

    @put("/shadow", operation_id="setShadowModel", sync_to_thread=True,
         summary="Score a version beside the active model on new holes without serving it "
                 "(version null stops it)",
         responses=errors(401, 403, 404, 422),
          opt=needs("admin"))
    def set_shadow(self, request: Request[Any, Any, Any], daemon: DaemonDep,
                   data: JSONBody[ShadowIn]) -> ShadowReport:
        return daemon.models.shadow(data.version, actor_of(request))

    @get("/{version:str}", operation_id="getModel", sync_to_thread=True,
         summary="A version's card, gate report and metrics", responses=errors(401, 404))
    def show(self, daemon: DaemonDep, version: VersionParam) -> ModelDetail:
        return daemon.models.show(version)

    @post("/{version:str}/activate", operation_id="activateModel", status_code=200,
          sync_to_thread=True,
          summary="Serve this version; refused naming the failing gate unless forced with a "
                  "reason",
          responses=errors(401, 403, 404, 409, 422),
          opt=needs("operator"))
    def activate(self, request: Request[Any, Any, Any], daemon: DaemonDep, version: VersionParam,
                 data: JSONBody[ActivateIn]) -> ModelSummary:
        if data.force and role_of(request) != "admin":
            raise PermissionDeniedException(
                detail=f"forcing {version} past a gate needs a key with the 'admin' role; key "
                       f"{actor_of(request)!r} has {role_of(request)!r}")
        return daemon.models.activate(version, actor_of(request), data.force, data.reason)
