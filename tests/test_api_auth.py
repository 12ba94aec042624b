"""Auth: every mutating route refuses a missing or invalid key; reads too unless --open-reads."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from test_api_support import fixture_baseline, running_daemon  # noqa: F401  (fixture)

from api.auth import UNAUTHORIZED, FailedLogins
from appliance.services.keys import hash_key

BAD_HEADERS = [{}, {"Authorization": "Bearer apk_wrong"}, {"Authorization": "Basic dXNlcjpw"},
               {"Authorization": "Bearer "}, {"Authorization": "apk_no_scheme"}]


def _operations(client) -> list[tuple[str, str]]:  # noqa: ANN001
    schema = client.get("/schema/openapi.json").json()
    ops = []
    for path, item in schema["paths"].items():
        for method in item:
            if method in ("get", "post", "put", "delete", "patch"):
                ops.append((method.upper(), re.sub(r"\{[^}]+\}", "x0", path)))
    return ops


@pytest.fixture
def api(tmp_path: Path, fixture_baseline: Path):  # noqa: F811
    with running_daemon(tmp_path / "home", fixture_baseline) as ctx:
        # this test client sends hundreds of wrong keys on purpose: no holding back here
        # (test_wrong_keys_are_logged_counted_and_held_back covers it)
        ctx[1].app.state.logins = FailedLogins(max_failures=10**9)
        yield ctx


OPEN = {("GET", "/health")}  # liveness probes and watchdogs hold no key


def test_every_route_rejects_missing_or_invalid_keys(api) -> None:
    daemon, client, good = api
    ops = [op for op in _operations(client) if op not in OPEN]
    mutating = [op for op in ops if op[0] != "GET"]
    assert len(mutating) >= 8  # holes, estimate, label, jobs x3, activate, rollback
    for method, path in ops:
        for headers in BAD_HEADERS:
            r = client.request(method, path, headers=headers, json={})
            assert r.status_code == 401, (method, path, headers, r.text)
            # no detail leak: the same answer whatever was wrong
            assert r.json()["detail"] == UNAUTHORIZED
            assert r.headers.get("www-authenticate") == "Bearer"
    assert daemon.store.count_holes() == 0
    assert daemon.store.list_jobs() == []


def test_valid_key_is_accepted_and_schema_is_open(api) -> None:
    _, client, good = api
    assert client.get("/schema/openapi.json").status_code == 200
    assert client.get("/health/details", headers=good).status_code == 200
    assert client.get("/holes", headers=good).status_code == 200


def test_keys_are_stored_hashed(api) -> None:
    daemon, _, good = api
    key = good["Authorization"].split()[1]
    with daemon.store.cursor() as con:
        stored = [r[0] for r in con.execute("SELECT key_hash FROM api_keys").fetchall()]
    assert key not in stored and hash_key(key) in stored


def test_open_reads(tmp_path: Path, fixture_baseline: Path) -> None:  # noqa: F811
    with running_daemon(tmp_path / "home", fixture_baseline, open_reads=True) as (
            _, client, good):
        assert client.get("/health").status_code == 200
        assert client.get("/holes").status_code == 200
        assert client.get("/models").status_code == 200
        # a wrong key is still wrong, even where none is needed
        assert client.get("/holes", headers={"Authorization": "Bearer nope"}).status_code == 401
        # writes still need a key
        assert client.post("/holes", content=b"x").status_code == 401
        assert client.post("/models/rollback", json={}).status_code == 401
        assert client.post("/jobs/fine-tune", json={}).status_code == 401


def test_first_start_creates_an_owner_only_admin_key(tmp_path: Path,
                                                     fixture_baseline: Path) -> None:  # noqa: F811
    from appliance.config import load_config
    from appliance.services.daemon import Daemon

    home = tmp_path / "home"
    daemon = Daemon.open(load_config(home), schedule=False, baseline_dir=fixture_baseline)
    try:
        path = daemon.first_key_file
        assert path == home / "admin.key"
        assert path.stat().st_mode & 0o777 == 0o600
        assert daemon.authenticate(path.read_text().strip()) == "admin"
        assert daemon.authenticate("apk_guess") is None
    finally:
        daemon.close()
    again = Daemon.open(load_config(home), schedule=False)
    try:
        assert again.first_key_file is None  # keys exist: nothing new is made
        assert [k["name"] for k in again.store.api_keys()] == ["admin"]
    finally:
        again.close()


def _key(client, headers: dict[str, str], name: str, role: str) -> dict[str, str]:  # noqa: ANN001
    r = client.post("/keys", json={"name": name, "role": role}, headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["role"] == role and r.json()["key"].startswith("apk_")
    return {"Authorization": f"Bearer {r.json()['key']}"}


def test_roles_limit_what_a_key_may_do(api) -> None:
    daemon, client, admin = api
    integration = _key(client, admin, "scada", "integration")
    operator = _key(client, admin, "tui-rig3", "operator")
    # integration: reads, holes, estimates; nothing an operator does
    assert client.get("/holes", headers=integration).status_code == 200
    for method, path, body in [("PUT", "/holes/x0/label", {"by": "x"}),
                               ("POST", "/jobs/fine-tune", {}),
                               ("POST", "/jobs/nightly", {}),
                               ("POST", "/models/rollback", {}),
                               ("POST", "/drift/x0/reset", None),
                               ("GET", "/audit", None),
                               ("POST", "/models/fixture-base/activate", {})]:
        r = client.request(method, path, json=body, headers=integration)
        assert r.status_code == 403, (method, path, r.text)
        assert "'operator' role" in r.json()["detail"] and "'integration'" in r.json()["detail"]
    # operator: all of that, but no forcing past a gate, no shadow, no keys
    assert client.get("/audit", headers=operator).status_code == 200
    r = client.post("/models/fixture-base/activate", json={"force": True, "reason": "x"},
                    headers=operator)
    assert r.status_code == 403 and "'admin' role" in r.json()["detail"]
    assert client.put("/models/shadow", json={"version": None},
                      headers=operator).status_code == 403
    assert client.get("/keys", headers=operator).status_code == 403
    assert client.post("/keys", json={"name": "x", "role": "admin"},
                       headers=operator).status_code == 403
    # admin: keys
    listed = {k["name"]: k["role"] for k in client.get("/keys", headers=admin).json()}
    assert listed["scada"] == "integration" and listed["tui-rig3"] == "operator"
    assert client.post("/keys", json={"name": "scada", "role": "admin"},
                       headers=admin).status_code == 409
    assert client.post("/keys", json={"name": "bad name!", "role": "admin"},
                       headers=admin).status_code == 422


def test_a_revoked_key_stops_working_at_once(api) -> None:
    daemon, client, admin = api
    scada = _key(client, admin, "scada", "integration")
    assert client.get("/holes", headers=scada).status_code == 200  # now cached as valid
    assert client.delete("/keys/scada", headers=admin).status_code == 200
    assert client.get("/holes", headers=scada).status_code == 401
    assert client.delete("/keys/scada", headers=admin).status_code == 404
    actions = [(a.action, a.subject) for a in daemon.store.audit_log()]
    assert ("key-create", "scada") in actions and ("key-revoke", "scada") in actions


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_wrong_keys_are_logged_counted_and_held_back(
        tmp_path: Path, fixture_baseline: Path) -> None:  # noqa: F811
    from prometheus_client.parser import text_string_to_metric_families

    # on the logger itself: Litestar's logging set-up takes the root logger's handlers over
    records = _Records()
    logging.getLogger("appliance.auth").addHandler(records)
    with running_daemon(tmp_path / "home", fixture_baseline) as (_, client, good):
        client.app.state.logins = FailedLogins(max_failures=3, window_s=60)
        wrong = {"Authorization": "Bearer apk_guess"}
        for _ in range(3):
            assert client.get("/holes", headers=wrong).status_code == 401
        r = client.get("/holes", headers=wrong)
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert "too many wrong API keys" in r.json()["detail"]
        # the held-back client cannot even try the right key until the window passes
        assert client.get("/holes", headers=good).status_code == 429
        logging.getLogger("appliance.auth").removeHandler(records)
        assert sum("wrong API key from" in m for m in records.messages) == 3
        client.app.state.logins = FailedLogins()  # another window: the good key works
        body = client.get("/metrics", headers=good).text
        counts = {s.labels["outcome"]: s.value
                  for f in text_string_to_metric_families(body) if f.name ==
                  "appliance_auth_failures" for s in f.samples if s.name.endswith("_total")}
        assert counts == {"wrong_key": 3.0, "held_back": 2.0}
