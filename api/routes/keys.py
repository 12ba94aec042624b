"""API keys while the daemon runs: create (the key shown once), list, revoke at once."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post
from litestar.params import JSONBody, Parameter

from api.auth import actor_of, needs
from api.routes._docs import DaemonDep, errors
from api.schemas import KeyIn, NewKeyOut
from appliance.records import ApiKey

NameParam = Annotated[str, Parameter(description="the key's name", max_length=64)]


class KeyController(Controller):
    path = "/keys"
    tags = ["keys"]

    @post("/", operation_id="createKey", status_code=201, sync_to_thread=True,
          summary="Create a key with a role; the answer holds the key, this once",
          responses=errors(401, 403, 409, 422), opt=needs("admin"))
    def create(self, request: Request[Any, Any, Any], daemon: DaemonDep,
               data: JSONBody[KeyIn]) -> NewKeyOut:
        key = daemon.create_key(data.name, data.role, actor_of(request))
        return NewKeyOut(name=data.name, role=data.role, key=key)

    @get("/", operation_id="listKeys", sync_to_thread=True,
         summary="Key names, roles and creation times (never the keys)",
         responses=errors(401, 403), opt=needs("admin"))
    def list_keys(self, daemon: DaemonDep) -> list[ApiKey]:
        return daemon.list_keys()

    @delete("/{name:str}", operation_id="revokeKey", status_code=200, sync_to_thread=True,
            summary="Revoke a key: it stops working at once", responses=errors(401, 403, 404),
            opt=needs("admin"))
    def revoke(self, request: Request[Any, Any, Any], daemon: DaemonDep,
               name: NameParam) -> ApiKey:
        return daemon.revoke_key(name, actor_of(request))
