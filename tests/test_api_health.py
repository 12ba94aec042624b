"""No answer of the API names an absolute path on the box: hole sources (CLI, upload, rows of
older versions), store, gate reports, audit, job records. (GET /health itself:
test_api_models.test_health_metrics_audit.)"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from model_fixtures import build_model_folder
from test_api_support import (  # noqa: F401  (fixture)
    fixture_baseline,
    running_daemon,
    synth_files,
)

from appliance.cli import main
from appliance.jobs.records import StoreJobRecords
from appliance.records import JobParams
from appliance.synth import generate


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{where}[{i}]")


def test_no_answer_names_an_absolute_path(tmp_path: Path, fixture_baseline: Path,  # noqa: F811
                                          capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    logs = tmp_path / "rig" / "logs"
    logs.mkdir(parents=True)
    (name, data, _), (up_name, up_data, _) = synth_files(2, seed=71)
    (logs / name).write_bytes(data)
    # by the CLI, given an absolute path
    assert main(["ingest", str(logs / name), "--home", str(home)]) == 0
    capsys.readouterr()
    with running_daemon(home, fixture_baseline) as (daemon, client, h):
        # a row an older version stored with the file's full path
        old = generate(1, 72)[0].trace
        daemon.store.add_hole(replace(old, meta=replace(old.meta, source=str(logs / "older.xls"))),
                              "rig")
        # a client naming its upload by its own absolute path
        r = client.post("/holes", params={"source": str(logs / up_name)}, content=up_data,
                        headers={**h, "Content-Type": "application/octet-stream"})
        assert r.status_code == 201 and r.json()["hole"]["source"] == up_name
        # a candidate registered from a folder outside the home, and gated
        folder = build_model_folder(tmp_path / "cands", "cand-paths", shift=3,
                                    parent="fixture-base")
        daemon.models.serving.register(folder, actor="test")
        daemon.models.serving.gate("cand-paths", actor="test")
        # a job that failed with a training child's traceback in its log
        records = StoreJobRecords(daemon.store)
        job = records.create("fine-tune", JobParams(folds=2))
        records.update(job.job_id, status="failed", error=(
            f"training finished but wrote no candidate manifest in {home}/jobs/x/candidate"),
            log_tail=('File "/usr/lib/python3/dist-packages/torch/nn/x.py", line 9',
                      f"OSError: cannot write {tmp_path}/elsewhere/ckpt.pt"))

        holes = client.get("/holes", headers=h).json()["items"]
        assert sorted(hole["source"] for hole in holes) == sorted([name, "older.xls", up_name])
        urls = ["/health", "/health/details", "/holes", "/models", "/models/cand-paths",
                "/models/fixture-base", "/models/activations", "/jobs",
                f"/jobs/{job.job_id}", "/audit", "/keys", "/drift", "/mqtt"]
        urls += [f"/holes/{hole['id']}" for hole in holes]
        found = []
        for url in urls:
            answer = client.get(url, headers=h)
            assert answer.status_code == 200, (url, answer.text)
            found += [(where, text) for where, text in _strings(answer.json(), url)
                      if text.startswith("/") or str(tmp_path) in text]
        assert found == []
        failed = client.get(f"/jobs/{job.job_id}", headers=h).json()
        assert failed["error"].endswith("in jobs/x/candidate")  # relative to the home
        assert failed["log_tail"] == ['File "x.py", line 9', "OSError: cannot write ckpt.pt"]
        gate = client.get("/models/cand-paths", headers=h).json()["gate_report"]["gates"][0]
        assert gate["details"]["folder"] == "models/cand-paths"
