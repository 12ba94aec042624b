"""Mutated and random inputs: only IngestError may escape, and never an 'unexpected' one.

The seeds are written by the writers from a small hand-made trace: no ../shared needed.
An 'unexpected ...' IngestError is how the parsers report a bug of their own, so it fails
these tests as surely as an escaping exception would.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.errors import IngestError
from appliance.ingest import parse_bytes
from appliance.ingest.fixtures import sample_trace
from appliance.ingest.json_writer import write_json_messages
from appliance.ingest.mqtt import parse_json_messages, read_message_folder
from appliance.ingest.setitec_writer import write_setitec

_TRACE = sample_trace(15, seed=1)
SETITEC_SEEDS = [
    write_setitec(dataclasses.replace(_TRACE, rpm=np.where(_TRACE.step == 1, -4e3, -1e3)), "v4"),
    write_setitec(_TRACE, "v9"),
    write_setitec(_TRACE, "v11", ";"),
]
_MESSAGES = write_json_messages(_TRACE)
JSON_SEEDS = [
    json.dumps({"trace": json.loads(_MESSAGES["Trace.json"]),
                "result": json.loads(_MESSAGES["Result.json"])}).encode(),
    json.dumps([json.loads(v) for v in _MESSAGES.values()]).encode(),
]
FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def only_ingest_errors(data: bytes) -> None:
    try:
        parse_bytes(data, "fuzz")
    except IngestError as exc:
        assert exc.source == "fuzz"
        assert not exc.problem.startswith("unexpected"), exc.problem


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    kind = draw(st.sampled_from(["flip", "truncate", "delete", "duplicate", "insert"]))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            at = draw(st.integers(0, len(data) - 1))
            data[at] = draw(st.integers(0, 255))
    elif kind == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif kind in ("delete", "duplicate"):
        lines = bytes(data).split(b"\n")
        at = draw(st.integers(0, len(lines) - 1))
        if kind == "delete":
            del lines[at]
        else:
            lines.insert(at, lines[at])
        data = bytearray(b"\n".join(lines))
    else:
        at = draw(st.integers(0, len(data)))
        token = draw(st.sampled_from([b"\t", b";", b",", b".", b"-", b"Inf", b"nan", b"1e999",
                                      b"\x00", b"\r", b"null", b"[", b"{", b'"', b"\n\n"]))
        data[at:at] = token
    return bytes(data)


@FUZZ
@given(mutated(SETITEC_SEEDS))
def test_mutated_setitec_logs(data: bytes) -> None:
    only_ingest_errors(data)


@FUZZ
@given(mutated(JSON_SEEDS))
def test_mutated_json_bodies(data: bytes) -> None:
    only_ingest_errors(data)


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(data: bytes) -> None:
    only_ingest_errors(data)


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=8)


@FUZZ
@given(st.data())
def test_json_messages_with_replaced_values(data: st.DataObject) -> None:
    messages = {k: json.loads(v) for k, v in _MESSAGES.items()}
    name = data.draw(st.sampled_from(sorted(messages)))
    payload = messages[name]["Messages"]["Payload"]
    key = data.draw(st.sampled_from(sorted(payload)))
    if data.draw(st.booleans()):
        payload[key]["Value"] = data.draw(_JSON_VALUES)
    else:
        del payload[key]
    encoded = {k: json.dumps(v).encode() for k, v in messages.items()}
    # The folder reader never raises: each file gets a trace, an error or a companion mark.
    for entry in read_message_folder(encoded, "fuzz"):
        assert (entry.trace is not None) + (entry.error is not None) + entry.companion == 1
        if entry.error is not None:
            assert not entry.error.problem.startswith("unexpected"), entry.error.problem
    try:
        parse_json_messages(encoded, "fuzz")
    except IngestError as exc:
        assert not exc.problem.startswith("unexpected"), exc.problem
