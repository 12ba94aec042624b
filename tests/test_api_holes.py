"""Holes routes through Litestar's test client against a real store in a temp home."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from test_api_support import (  # noqa: F401  (fixture)
    fixture_baseline,
    ingest,
    running_daemon,
    synth_files,
    synth_json_body,
)

from appliance.cli import main
from appliance.commands._common import cli_actor
from appliance.services.downsample import minmax_indices
from appliance.store import Store

OCTET = {"Content-Type": "application/octet-stream"}


@pytest.fixture
def api(tmp_path: Path, fixture_baseline: Path):  # noqa: F811
    with running_daemon(tmp_path / "home", fixture_baseline) as (daemon, client, headers):
        yield daemon, client, headers


def test_ingest_creates_then_recognises_duplicate(api) -> None:
    daemon, client, h = api
    name, data, _ = synth_files(1, seed=11)[0]
    r = client.post("/holes", params={"source": name}, content=data, headers={**h, **OCTET})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["created"] is True
    assert body["hole"]["source"] == name
    assert body["hole"]["n_samples"] > 100
    assert body["estimate"]["model_version"] == "fixture-base"
    assert body["estimate"]["estimator"] == "ensemble"
    # the estimate was stored with the hole
    [stored] = daemon.store.predictions(body["hole"]["id"])
    assert stored.estimate.model_version == "fixture-base"
    again = client.post("/holes", params={"source": "copy.xls"}, content=data,
                        headers={**h, **OCTET})
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert again.json()["hole"]["id"] == body["hole"]["id"]
    assert daemon.store.count_holes() == 1


def test_ingest_json_message_pair(api) -> None:
    daemon, client, h = api
    r = client.post("/holes", params={"source": "pair.json"}, content=synth_json_body(5),
                    headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    assert r.json()["hole"]["variant"] == "json"
    assert daemon.store.count_holes() == 1


def test_bad_input_is_422_with_parser_message_and_quarantined(api) -> None:
    daemon, client, h = api
    r = client.post("/holes", params={"source": "broken.xls"}, content=b"\x00\x01not a log",
                    headers={**h, **OCTET})
    assert r.status_code == 422
    assert r.json()["detail"].startswith("broken.xls")
    q = daemon.store.quarantined()
    assert [e["source"] for e in q] == ["broken.xls"]
    assert daemon.store.count_holes() == 0


def test_truncated_file_names_the_problem(api) -> None:
    _, client, h = api
    _, data, _ = synth_files(1, seed=12)[0]
    cut = data[: len(data) // 3].rsplit(b"\n", 1)[0] + b"\n1,0;xx\n"
    r = client.post("/holes", params={"source": "cut.xls"}, content=cut, headers={**h, **OCTET})
    assert r.status_code == 422
    assert "cut.xls" in r.json()["detail"]


def test_body_over_size_limit_is_413(tmp_path: Path, fixture_baseline: Path) -> None:  # noqa: F811
    _, data, _ = synth_files(1, seed=13)[0]
    limit_mb = (len(data) // 2) / 1024 / 1024
    with running_daemon(tmp_path / "home", fixture_baseline, max_body_mb=limit_mb) as (
            daemon, client, h):
        r = client.post("/holes", params={"source": "big.xls"}, content=data,
                        headers={**h, **OCTET})
        assert r.status_code == 413
        assert daemon.store.count_holes() == 0
        small = client.post("/estimate", content=data[:100], headers={**h, **OCTET})
        assert small.status_code == 422  # under the limit: reaches the parser
        for path in ("/holes", "/estimate"):  # the cap holds for a form as for a raw body
            form = client.post(path, files={"file": ("big.xls", data)}, headers=h)
            assert form.status_code == 413, form.text
        assert daemon.store.count_holes() == 0


def test_multipart_upload_names_the_hole_by_its_file(api) -> None:
    daemon, client, h = api
    name, data, _ = synth_files(1, seed=18)[0]
    r = client.post("/holes", files={"file": (name, data, "application/vnd.ms-excel")},
                    headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["hole"]["source"] == name
    assert r.json()["estimate"]["model_version"] == "fixture-base"
    # the same bytes raw are the same hole: multipart carried them unchanged
    raw = client.post("/holes", content=data, headers={**h, **OCTET})
    assert raw.status_code == 200 and raw.json()["hole"]["id"] == r.json()["hole"]["id"]
    est = client.post("/estimate", files={"file": (name, data)}, headers=h)
    assert est.status_code == 200, est.text
    assert est.json()["entry_mm"] == r.json()["estimate"]["entry_mm"]
    assert daemon.store.count_holes() == 1


def test_multipart_source_query_then_field_then_file_name(api) -> None:
    _, client, h = api
    files = synth_files(2, seed=19)
    by_query = client.post("/holes", params={"source": "query.xls"}, headers=h,
                           data={"source": "field.xls"}, files={"file": ("f.xls", files[0][1])})
    by_field = client.post("/holes", data={"source": "field.xls"}, headers=h,
                           files={"file": ("f.xls", files[1][1])})
    assert [r.status_code for r in (by_query, by_field)] == [201, 201], by_field.text
    assert by_query.json()["hole"]["source"] == "query.xls"
    assert by_field.json()["hole"]["source"] == "field.xls"
    bad = client.post("/holes", data={"source": "a\tb"}, files={"file": ("f.xls", files[0][1])},
                      headers=h)
    assert bad.status_code == 422  # a form's name is checked as the query's is


def test_multipart_errors_are_precise(api) -> None:
    daemon, client, h = api
    _, data, _ = synth_files(1, seed=20)[0]
    for path in ("/holes", "/estimate"):
        no_file = client.post(path, data={"source": "x.xls"}, files={"log": ("x.xls", data)},
                              headers=h)
        assert no_file.status_code == 400
        detail = no_file.json()["detail"]
        assert "no file part named 'file'" in detail and "'log'" in detail
        text = client.post(path, data={"file": "not a file"}, headers=h,
                           files={"other": ("o.xls", b"x")})
        assert text.status_code == 400 and "is text, not a file" in text.json()["detail"]
    two = client.post("/holes", headers=h, files=[("file", ("a.xls", data)),
                                                  ("file", ("b.xls", data))])
    assert two.status_code == 400 and "one hole per request" in two.json()["detail"]
    broken = client.post("/holes", files={"file": ("broken.xls", b"\x00\x01not a log")},
                         headers=h)
    assert broken.status_code == 422 and broken.json()["detail"].startswith("broken.xls")
    # a part without a file name is a text field to the form parser: not the log
    unnamed = client.post("/holes", files={"file": ("", data)}, headers=h)
    assert unnamed.status_code == 400 and "is text" in unnamed.json()["detail"]
    binary = client.post("/holes", files={"file": ("", b"\xff\xfe\x00")}, headers=h)
    assert binary.status_code == 400, binary.text
    no_boundary = client.post("/holes", content=data,
                              headers={**h, "Content-Type": "multipart/form-data"})
    assert no_boundary.status_code == 400
    assert daemon.store.count_holes() == 0


def test_source_must_be_a_plain_label(api) -> None:
    _, client, h = api
    _, data, _ = synth_files(1, seed=14)[0]
    r = client.post("/holes", params={"source": "a\tb"}, content=data, headers={**h, **OCTET})
    assert r.status_code == 422


def test_estimate_is_stateless(api) -> None:
    daemon, client, h = api
    _, data, _ = synth_files(1, seed=15)[0]
    r = client.post("/estimate", content=data, headers={**h, **OCTET})
    assert r.status_code == 200, r.text
    est = r.json()
    assert set(est) >= {"entry_mm", "transition_mm", "exit_mm", "spread_mm", "presence",
                        "model_version", "estimator"}
    assert daemon.store.count_holes() == 0
    bad = client.post("/estimate", content=b"nonsense", headers={**h, **OCTET})
    assert bad.status_code == 422
    assert daemon.store.quarantined() == []  # stateless: not even a quarantine entry


def test_list_filters_pagination_and_review_order(api) -> None:
    daemon, client, h = api
    files = synth_files(6, seed=16)
    ids = ingest(client, h, files)
    truth = files[0][2]
    r = client.put(f"/holes/{ids[0]}/label", headers=h,
                   json={**truth.as_dict(), "by": "ann"})
    assert r.status_code == 200, r.text
    page = client.get("/holes", headers=h, params={"limit": 4}).json()
    assert page["total"] == 6 and len(page["items"]) == 4
    rest = client.get("/holes", headers=h, params={"limit": 4, "offset": 4}).json()
    assert len(rest["items"]) == 2
    assert {i["id"] for i in page["items"] + rest["items"]} == set(ids)
    labelled = client.get("/holes", headers=h, params={"status": "labelled"}).json()
    assert [i["id"] for i in labelled["items"]] == [ids[0]]
    assert labelled["items"][0]["label"]["by"] == "ann"
    unlabelled = client.get("/holes", headers=h, params={"status": "unlabelled"}).json()
    assert unlabelled["total"] == 5
    review = client.get("/holes", headers=h, params={"status": "needs-review"}).json()
    assert review["total"] == 5
    # the engine may or may not judge its estimates: by priority when it does, else by spread
    priorities = [i["review_priority"] for i in review["items"]]
    assert priorities == [i["estimate"]["review_priority"] for i in review["items"]]
    if all(p is not None for p in priorities):
        assert priorities == sorted(priorities, reverse=True)
    else:
        assert priorities == [None] * 5
        spreads = [i["uncertainty_mm"] for i in review["items"]]
        assert all(s is not None for s in spreads)
        assert spreads == sorted(spreads, reverse=True)
    future = client.get("/holes", headers=h, params={"since": "2999-01-01T00:00:00"}).json()
    assert future["total"] == 0
    zoned = client.get("/holes", headers=h, params={"since": "2000-01-01T00:00:00+05:00"})
    assert zoned.status_code == 200 and zoned.json()["total"] == 6
    assert client.get("/holes", headers=h, params={"status": "weird"}).status_code == 400
    assert client.get("/holes", headers=h, params={"limit": 0}).status_code == 400


def test_get_hole_and_404(api) -> None:
    _, client, h = api
    [hid] = ingest(client, h, synth_files(1, seed=17))
    r = client.get(f"/holes/{hid}", headers=h)
    assert r.status_code == 200
    assert r.json()["id"] == hid and r.json()["labelled"] is False
    missing = client.get("/holes/0000000000000000", headers=h)
    assert missing.status_code == 404
    assert "0000000000000000" in missing.json()["detail"]


def test_trace_downsampled_keeps_extremes(api) -> None:
    daemon, client, h = api
    [hid] = ingest(client, h, synth_files(1, seed=18))
    trace = daemon.store.get_trace(hid)
    r = client.get(f"/holes/{hid}/trace", headers=h, params={"max_points": 200})
    assert r.status_code == 200
    t = r.json()
    assert t["n_samples"] == len(trace) and t["n_points"] == len(t["depth_mm"]) <= 200
    assert max(t["torque_a"]) == pytest.approx(float(np.max(trace.torque_a)))
    assert min(t["torque_a"]) == pytest.approx(float(np.min(trace.torque_a)))
    assert t["index"] == sorted(t["index"]) and t["index"][0] == 0
    assert t["index"][-1] == len(trace) - 1
    full = client.get(f"/holes/{hid}/trace", headers=h,
                      params={"max_points": len(trace) + 10}).json()
    assert full["n_points"] == len(trace)
    assert client.get("/holes/ffffffffffffffff/trace", headers=h).status_code == 404
    assert client.get(f"/holes/{hid}/trace", headers=h,
                      params={"max_points": 1}).status_code == 400


def test_minmax_indices_keeps_step_changes_and_spikes() -> None:
    n = 10_000
    torque = np.sin(np.linspace(0, 20, n))
    torque[4321] = 50.0  # a one-sample spike must survive
    torque[777] = -50.0
    step = np.zeros(n, dtype=np.int32)
    step[6000:] = 1
    idx = minmax_indices(400, torque, torque * 0.5, step)
    assert len(idx) <= 400
    assert {777, 4321, 6000, 0, n - 1} <= set(idx.tolist())
    assert np.all(np.diff(idx) > 0)


def test_estimate_stored_then_fresh(api) -> None:
    daemon, client, h = api
    [hid] = ingest(client, h, synth_files(1, seed=19))
    before = len(daemon.store.predictions(hid))
    stored = client.get(f"/holes/{hid}/estimate", headers=h)
    assert stored.status_code == 200
    assert len(daemon.store.predictions(hid)) == before  # served from the store
    fresh = client.get(f"/holes/{hid}/estimate", headers=h, params={"fresh": "true"})
    assert fresh.status_code == 200
    assert fresh.json()["entry_mm"] == stored.json()["entry_mm"]
    assert len(daemon.store.predictions(hid)) == before + 1
    assert client.get("/holes/0123456789abcdef/estimate", headers=h).status_code == 404


def test_label_history_and_validation(api) -> None:
    daemon, client, h = api
    files = synth_files(1, seed=20)
    [hid] = ingest(client, h, files)
    hole = client.get(f"/holes/{hid}", headers=h).json()
    lo, hi = hole["depth_min_mm"], hole["depth_max_mm"]
    first = {"entry_mm": lo + 1.0, "transition_mm": None, "exit_mm": hi - 1.0, "by": "ann"}
    r1 = client.put(f"/holes/{hid}/label", headers=h, json=first)
    assert r1.status_code == 200, r1.text
    second = {**first, "entry_mm": lo + 1.5, "by": "bob"}
    r2 = client.put(f"/holes/{hid}/label", headers=h, json=second)
    assert r2.status_code == 200
    history = client.get(f"/holes/{hid}/labels", headers=h).json()
    assert [lab["by"] for lab in history] == ["ann", "bob"]
    assert history[-1]["entry_mm"] == pytest.approx(lo + 1.5)
    assert client.get(f"/holes/{hid}", headers=h).json()["label"]["by"] == "bob"
    # out of the trace's depth range
    r = client.put(f"/holes/{hid}/label", headers=h, json={**first, "exit_mm": hi + 5.0})
    assert r.status_code == 422 and "depth range" in r.json()["detail"]
    # out of order
    r = client.put(f"/holes/{hid}/label", headers=h,
                   json={**first, "transition_mm": lo + 0.5})
    assert r.status_code == 422 and "shallower" in r.json()["detail"]
    # malformed bodies: a missing point, an unknown field, an empty name, a string depth
    for body in ({k: v for k, v in first.items() if k != "exit_mm"}, {**first, "exit": 3.0},
                 {**first, "by": ""}, {**first, "entry_mm": "deep"}):
        assert client.put(f"/holes/{hid}/label", headers=h, json=body).status_code == 400
    assert len(client.get(f"/holes/{hid}/labels", headers=h).json()) == 2
    assert client.put("/holes/0123456789abcdef/label", headers=h,
                      json=first).status_code == 404
    assert client.get("/holes/0123456789abcdef/labels", headers=h).status_code == 404
    audit = daemon.store.audit_log(action="label")
    assert len(audit) == 2 and audit[0].actor == "tester"


def test_needs_review_orders_by_spread_then_confidence(tmp_path: Path,
                                                       fixture_baseline: Path) -> None:  # noqa: F811
    from appliance.config import load_config
    from appliance.points import DepthEstimate
    from appliance.services.daemon import Daemon
    from appliance.synth import generate

    home = tmp_path / "home"
    # holes and estimates stored by an earlier run of the daemon
    first = Daemon.open(load_config(home), schedule=False, baseline_dir=fixture_baseline)
    cases = {"wide": (0.9, 0.8), "narrow": (0.1, 0.9), "none-low": (0.0, 0.2),
             "none-high": (0.0, 0.95)}
    ids = {}
    for (name, (spread, conf)), hole in zip(cases.items(), generate(5, 71), strict=False):
        hid, _ = first.store.add_hole(hole.trace, "g")
        first.store.add_prediction(hid, DepthEstimate(
            None, None, None, spread_mm={"entry": spread}, presence={"entry": 0.0},
            confidence={"entry": conf}, model_version="fixture-base", estimator="ensemble"))
        ids[hid] = name
    first.close()
    with running_daemon(home, None) as (daemon, client, h):
        daemon._backfill.join(timeout=30)  # it had nothing to do; the next hole stays bare
        unestimated, _ = daemon.store.add_hole(generate(6, 72)[5].trace, "g")
        ids[unestimated] = "never"
        page = client.get("/holes", headers=h, params={"status": "needs-review"}).json()
        assert [ids[i["id"]] for i in page["items"]] == [
            "never", "wide", "narrow", "none-low", "none-high"]


def test_needs_review_orders_by_priority_then_spread(tmp_path: Path) -> None:
    from appliance.config import load_config
    from appliance.points import DepthEstimate
    from appliance.services.daemon import Daemon
    from appliance.synth import generate

    home = tmp_path / "home"
    first = Daemon.open(load_config(home), schedule=False, baseline_dir=None)
    # name: (review priority, largest spread); None priority: stored before priorities
    cases = {"p-low": (0.05, 0.9), "old-wide": (None, 0.8), "p-high": (0.7, 0.1),
             "p-mid-narrow": (0.3, 0.1), "p-mid-wide": (0.3, 0.5), "old-narrow": (None, 0.2),
             "labelled": (0.99, 0.9)}
    holes = generate(len(cases) + 1, 74)
    ids = {}
    for (name, (priority, spread)), hole in zip(cases.items(), holes, strict=False):
        hid, _ = first.store.add_hole(hole.trace, "g")
        first.store.add_prediction(hid, DepthEstimate(
            None, None, None, spread_mm={"entry": spread}, presence={"entry": 0.0},
            confidence={"entry": 0.5}, model_version="m", estimator="ensemble",
            review_priority=priority))
        ids[hid] = name
        if name == "labelled":
            first.store.add_label(hid, hole.truth, "ann")
    first.close()
    with running_daemon(home, None) as (daemon, client, h):
        daemon._backfill.join(timeout=30)
        never, _ = daemon.store.add_hole(holes[-1].trace, "g")
        ids[never] = "never"
        want = ["never", "p-high", "p-mid-wide", "p-mid-narrow", "p-low", "old-wide",
                "old-narrow"]
        page = client.get("/holes", headers=h, params={"status": "needs-review"}).json()
        assert [ids[i["id"]] for i in page["items"]] == want
        assert page["total"] == 7
        assert [i["review_priority"] for i in page["items"]] == [
            None, 0.7, 0.3, 0.3, 0.05, None, None]
        assert page["items"][1]["estimate"]["review_priority"] == 0.7
        # pages of two cut the same order, each with the full total
        pages = [client.get("/holes", headers=h, params={
            "status": "needs-review", "limit": 2, "offset": k}).json() for k in range(0, 8, 2)]
        assert [ids[i["id"]] for p in pages for i in p["items"]] == want
        assert {p["total"] for p in pages} == {7}
        # a label takes a hole out of the queue at once
        p_high = next(k for k, v in ids.items() if v == "p-high")
        truth = holes[list(cases).index("p-high")].truth
        assert client.put(f"/holes/{p_high}/label", headers=h,
                          json={**truth.as_dict(), "by": "bo"}).status_code == 200
        after = client.get("/holes", headers=h, params={"status": "needs-review"}).json()
        assert after["total"] == 6 and "p-high" not in [ids[i["id"]] for i in after["items"]]
        hole = client.get(f"/holes/{p_high}", headers=h).json()
        assert hole["review_priority"] == 0.7


def test_holes_stored_without_estimate_are_estimated_at_start(
        tmp_path: Path, fixture_baseline: Path) -> None:  # noqa: F811
    import time

    from appliance.store import Store
    from appliance.synth import generate

    home = tmp_path / "home"
    with Store.open(home) as store:  # as `appliance ingest` leaves them: no predictions
        ids = [store.add_hole(h.trace, "g")[0] for h in generate(3, 73)]
    with running_daemon(home, fixture_baseline) as (daemon, client, h):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(
                daemon.store.predictions(i) for i in ids):
            time.sleep(0.1)
        for hid in ids:
            [pred] = daemon.store.predictions(hid)
            assert pred.estimate.model_version == "fixture-base"
        items = client.get("/holes", headers=h).json()["items"]
        assert all(i["estimate"]["model_version"] == "fixture-base" for i in items)


class _Logged(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_deep_json_is_a_logged_400_and_a_bug_a_logged_500(api, monkeypatch) -> None:  # noqa: ANN001
    daemon, client, h = api
    hole = ingest(client, h, synth_files(1, seed=17))[0]
    logged = _Logged()  # on the logger: Litestar's logging set-up takes the root's handlers
    logging.getLogger("appliance.api").addHandler(logged)
    try:
        deep = b'{"by": ' * 1000 + b'"x"' + b"}" * 1000
        r = client.put(f"/holes/{hole}/label", content=deep,
                       headers={**h, "Content-Type": "application/json"})
        assert r.status_code == 400 and "nested too deeply" in r.json()["detail"]
        assert any(rec.levelno == logging.WARNING and f"PUT /holes/{hole}/label: 400"
                   in rec.getMessage() for rec in logged.records)
        # an upload is a hole message: rejected as every unreadable upload is, saying why
        r = client.post("/estimate", content=b"[" * 5000 + b"]" * 5000,
                        headers={**h, "Content-Type": "application/json"})
        assert r.status_code == 422 and "JSON nested too deeply" in r.json()["detail"]

        def broken(*_: object) -> None:
            raise ZeroDivisionError("a bug")

        monkeypatch.setattr(daemon.holes, "list", broken)
        r = client.get("/holes", headers=h)
        assert r.status_code == 500 and "ZeroDivisionError" in r.json()["detail"]
        bug = [rec for rec in logged.records if rec.levelno == logging.ERROR]
        assert len(bug) == 1 and "GET /holes: 500" in bug[0].getMessage()
        assert bug[0].exc_info is not None and bug[0].exc_info[0] is ZeroDivisionError
    finally:
        logging.getLogger("appliance.api").removeHandler(logged)


def test_the_label_verb_is_held_to_the_api_s_rules_and_words(
        tmp_path: Path, fixture_baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    """`appliance label` and PUT /holes/{id}/label call the same service: the same refusals
    word for word, the same stored estimate and the same audit entry."""
    home = tmp_path / "home"
    with running_daemon(home, fixture_baseline) as (daemon, client, h):
        [hid] = ingest(client, h, synth_files(1, seed=21))
        hole = client.get(f"/holes/{hid}", headers=h).json()
        lo, hi = hole["depth_min_mm"], hole["depth_max_mm"]
        good = {"entry_mm": lo + 1.0, "transition_mm": None, "exit_mm": hi - 1.0, "by": "ann"}
        refused = [{**good, "entry_mm": hi - 1.0, "exit_mm": lo + 1.0},  # out of order
                   {**good, "by": "ann\x1b[2J"}]  # a terminal escape in who set it
        details = []
        for body in refused:
            r = client.put(f"/holes/{hid}/label", headers=h, json=body)
            assert r.status_code == 422, r.text
            details.append(r.json()["detail"])
        estimate = daemon.holes.latest_estimate(hid)
    assert "shallower" in details[0] and "control characters" in details[1]
    capsys.readouterr()  # the daemon's log

    def label(body: dict) -> tuple[int, str]:  # no daemon now: the verb opens the store
        code = main(["label", hid, "--entry", str(body["entry_mm"]), "--transition", "none",
                     "--exit", str(body["exit_mm"]), "--by", body["by"], "--home", str(home)])
        return code, capsys.readouterr().err

    for body, detail in zip(refused, details, strict=True):
        assert label(body) == (2, f"appliance label: {detail}\n")
    assert label(good) == (0, "")
    with Store.open(home) as store:
        [stored] = store.label_history(hid)
        assert stored.from_estimate == estimate is not None
        [entry] = store.audit_log(action="label")
    assert (entry.actor, entry.subject) == (cli_actor(), hid)
    assert entry.detail == {"label_id": stored.label_id, "by": "ann",
                               "entry_mm": good["entry_mm"], "transition_mm": None,
                               "exit_mm": good["exit_mm"]}
