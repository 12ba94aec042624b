"""kill -9 of a real daemon around the newer routes: keys and backups stay consistent."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
from test_api_support import (  # noqa: F401  (fixture)
    ServeProcess,
    cli,
    fixture_baseline,
    prepare_home,
)

from appliance.services.backup import PARTIAL, verify_backup

TIMEOUT = 30


def _admin(home: Path) -> dict[str, str]:
    done = cli("keys", "create", "ops", "--role", "admin", "--home", str(home), "--json")
    assert done.returncode == 0, done.stderr
    return {"Authorization": f"Bearer {json.loads(done.stdout)['key']}"}


def test_keys_and_backups_survive_a_kill_9(tmp_path: Path, fixture_baseline: Path  # noqa: F811
                                           ) -> None:
    home = tmp_path / "home"
    prepare_home(home, fixture_baseline)
    admin = _admin(home)
    serve = ServeProcess(home)
    try:
        serve.wait_ready(admin)
        with httpx.Client(base_url=serve.url, headers=admin, timeout=TIMEOUT) as c:
            kept = c.post("/keys", json={"name": "kept", "role": "integration"})
            gone = c.post("/keys", json={"name": "gone", "role": "integration"})
            assert kept.status_code == 201 and gone.status_code == 201, kept.text
            assert c.delete("/keys/gone").status_code == 200
            first = c.post("/backups")
            assert first.status_code in (200, 201), first.text
        # a second backup is under way when the daemon is killed: whatever it had written
        # must never pass for a backup
        outcome: list[int] = []

        def backup() -> None:
            try:
                outcome.append(httpx.post(serve.url + "/backups", headers=admin,
                                          timeout=TIMEOUT).status_code)
            except httpx.HTTPError:
                outcome.append(0)

        racer = threading.Thread(target=backup)
        racer.start()
        time.sleep(0.2)
        serve.kill()  # SIGKILL: no cleanup at all
        racer.join(timeout=TIMEOUT)
    finally:
        serve.stop()

    again = ServeProcess(home)
    try:
        again.wait_ready(admin)
        kept_key = {"Authorization": f"Bearer {kept.json()['key']}"}
        gone_key = {"Authorization": f"Bearer {gone.json()['key']}"}
        assert httpx.get(again.url + "/holes", headers=kept_key, timeout=TIMEOUT
                         ).status_code == 200
        assert httpx.get(again.url + "/holes", headers=gone_key, timeout=TIMEOUT
                         ).status_code == 401  # a revocation is not undone by a crash
        names = {k["name"] for k in httpx.get(again.url + "/keys", headers=admin,
                                                timeout=TIMEOUT).json()}
        assert {"ops", "kept"} <= names
        third = httpx.post(again.url + "/backups", headers=admin, timeout=TIMEOUT)
        assert third.status_code in (200, 201), third.text
    finally:
        again.stop()
    backups = home / "backups"
    assert not list(backups.glob(f".*{PARTIAL}*"))  # a killed backup's leftovers are swept
    folders = [p for p in backups.iterdir() if p.is_dir()]
    assert len(folders) >= 2  # the first and the third; the killed one may have finished
    for folder in folders:
        verify_backup(folder)  # every backup there is whole
