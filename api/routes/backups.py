"""Backups taken by the running daemon (it owns the store while it runs).

The daemon writes the backup under its own home (`<home>/backups/<name>/`), with a name it
makes: a caller never chooses where on the box the daemon writes. `appliance backup DIR`, on
the same box, moves the folder on to DIR.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post

from api.auth import actor_of, needs
from api.routes._docs import DaemonDep, errors
from api.schemas import BackupOut


class BackupController(Controller):
    path = "/backups"
    tags = ["system"]

    @post("/", operation_id="createBackup", status_code=201, sync_to_thread=True,
          summary="Take a consistent backup of the home (store, model versions, keys, "
                  "settings) into <home>/backups/<name>/ while serving",
          responses=errors(401, 403, 409), opt=needs("admin"))
    def create(self, request: Request[Any, Any, Any], daemon: DaemonDep) -> BackupOut:
        name, m = daemon.backup(actor_of(request))
        return BackupOut(name=name, created_at=m.created_at,
                         appliance_version=m.appliance_version,
                         schema_version=m.schema_version, counts=m.counts,
                         active_model=m.active_model, models=list(m.models),
                         files=len(m.files), bytes=m.total_bytes)
