"""Auth: every mutating route refuses a missing or invalid key; reads too unless --open-reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_api_support import fixture_baseline, running_daemon  # noqa: F401  (fixture)

from api.auth import UNAUTHORIZED
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
        yield ctx


def test_every_route_rejects_missing_or_invalid_keys(api) -> None:
    daemon, client, good = api
    ops = _operations(client)
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
    assert client.get("/health", headers=good).status_code == 200
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
