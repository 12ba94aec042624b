"""Every route's role, as the table of roles says (architecture.md, "Who may do what"), checked
against the operation ids of the OpenAPI schema: a new route without a row here fails.

integration: read, send holes, ask for estimates; operator: + labels, start and cancel
fine-tunes and searches, activate a candidate that passed every gate, roll back; admin: +
force past a gate, shadow, keys, backups.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from model_fixtures import build_model_folder
from test_api_support import add_key, running_daemon

from api.auth import require_key
from appliance.services.keys import ROLES, Role

OPEN = None  # no key at all: liveness probes and watchdogs

ROLE_OF: dict[str, Role | None] = {
    # holes and estimates: what a supervisory system does
    "ingestHole": "integration",
    "estimateUpload": "integration",
    "listHoles": "integration",
    "getHole": "integration",
    "getHoleTrace": "integration",
    "getHoleEstimate": "integration",
    "listHoleLabels": "integration",
    "labelHole": "operator",
    # jobs: reading them is reading; starting or cancelling one is an operator's
    "listJobs": "integration",
    "getJob": "integration",
    "streamJobEvents": "integration",
    "listTrials": "integration",
    "startFineTune": "operator",
    "startTune": "operator",
    "runNightly": "operator",  # it starts a fine-tune
    "cancelJob": "operator",
    # models: activating one that passed every gate and rolling back are an operator's;
    # forcing past a gate (activateModel with force, checked below) and shadow an admin's
    "listModels": "integration",
    "getActiveModel": "integration",
    "listActivations": "integration",
    "getModel": "integration",
    "getShadowReport": "integration",
    "activateModel": "operator",
    "rollbackModel": "operator",
    "setShadowModel": "admin",
    # the rig's state
    "getHealth": OPEN,
    "getHealthDetails": "integration",
    "getMqtt": "integration",
    "getMetrics": "integration",
    "getDrift": "integration",
    "resetDrift": "operator",  # it changes what the drift watch knows, like a label does
    "listAudit": "operator",  # who did what, under which key: not for a supervisory system
    # keys and backups
    "createKey": "admin",
    "listKeys": "admin",
    "revokeKey": "admin",
    "createBackup": "admin",
}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[tuple[TestClient[Litestar], dict[Role, dict[str, str]]]]:
    tmp = tmp_path_factory.mktemp("roles")
    baseline = build_model_folder(tmp / "shipped", "fixture-base")
    with running_daemon(tmp / "home", baseline) as (daemon, client, _):
        keys = {role: {"Authorization": f"Bearer {add_key(daemon, f'key-{role}', role)}"}
                for role in ROLES}
        yield client, keys


def _operations(client: TestClient[Litestar]) -> dict[str, tuple[str, str]]:
    """operationId -> (method, path) of every operation in the served schema."""
    schema = client.get("/schema/openapi.json").json()
    return {op["operationId"]: (method.upper(), path)
            for path, item in schema["paths"].items()
            for method, op in item.items() if isinstance(op, dict) and "operationId" in op}


def test_the_table_covers_every_operation_of_the_schema(api) -> None:  # noqa: ANN001
    client, _ = api
    ops = _operations(client)
    assert len(ops) >= 30
    missing = sorted(set(ops) - set(ROLE_OF))
    gone = sorted(set(ROLE_OF) - set(ops))
    assert not missing, f"operations without a role in ROLE_OF: {missing}"
    assert not gone, f"ROLE_OF names operations the API no longer has: {gone}"


def test_each_handler_is_guarded_with_its_role(api) -> None:  # noqa: ANN001
    """What the guard reads: the handler's opt, and whether require_key guards it at all."""
    client, _ = api
    seen: dict[str, tuple[Role | None, bool]] = {}
    for route in client.app.routes:
        for handler in getattr(route, "route_handlers", []):
            op = handler.operation_id
            if not isinstance(op, str):
                continue  # OPTIONS and the schema's own routes
            guarded = any(getattr(g, "func", g) is require_key for g in handler.resolve_guards())
            seen[op] = (handler.opt.get("role", "integration") if guarded else OPEN, guarded)
    assert {op: role for op, (role, _) in seen.items()} == ROLE_OF
    assert [op for op, (_, guarded) in seen.items() if not guarded] == ["getHealth"]


def _call(client: TestClient[Litestar], method: str, path: str, headers: dict[str, str],
          body: Any = None) -> Any:
    # every path parameter names nothing that exists: an allowed call ends in 404 or a
    # refused body, never in a change (a backup is the one thing an admin call really does)
    url = path.replace("{", "").replace("}", "")
    for name in ("hole_id", "job_id", "version", "drill", "name"):
        url = url.replace(name, "x0")
    return client.request(method, url, headers=headers, json={} if body is None else body)


def test_each_role_is_refused_below_and_let_through_at_or_above(api) -> None:  # noqa: ANN001
    client, keys = api
    for op, (method, path) in sorted(_operations(client).items()):
        needed = ROLE_OF[op]
        if needed is OPEN:
            assert _call(client, method, path, {}).status_code == 200, op
            continue
        for role in ROLES:
            r = _call(client, method, path, keys[role])
            if ROLES.index(role) < ROLES.index(needed):
                assert r.status_code == 403, (op, role, r.text)
                detail = r.json()["detail"]
                assert f"needs a key with the {needed!r} role" in detail, (op, detail)
                assert f"has {role!r}" in detail, (op, detail)
            else:
                assert r.status_code not in (401, 403), (op, role, r.status_code, r.text)


def test_forcing_past_a_gate_needs_an_admin(api) -> None:  # noqa: ANN001
    client, keys = api
    body = {"force": True, "reason": "checked by hand"}
    assert _call(client, "POST", "/models/{version}/activate", keys["integration"],
                 body).status_code == 403  # not even an unforced one
    r = _call(client, "POST", "/models/{version}/activate", keys["operator"], body)
    assert r.status_code == 403 and "needs a key with the 'admin' role" in r.json()["detail"]
    r = _call(client, "POST", "/models/{version}/activate", keys["admin"], body)
    assert r.status_code == 404  # let through: no version x0
