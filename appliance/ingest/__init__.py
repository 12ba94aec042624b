"""Setitec logs and JSON trace messages -> Trace.

Public interface (other rooms use only these names):

- parse_bytes(data, source) -> Trace: sniff the content (Setitec text or a JSON message
  pair/single message) and parse it; raises IngestError and nothing else.
- parse_file(path) -> Trace
- iter_inputs(paths) -> Iterator[InputResult]: walk files/folders as `appliance ingest`
  does (recursive, .xls/.json any case; JSON companions grouped per folder).

Implemented in setitec.py (text logs), mqtt.py (JSON messages), discover.py (walking).
Writers for fixtures: setitec_writer.write_setitec, json_writer.write_json_messages.
"""

from __future__ import annotations

import dataclasses
import json

from appliance.errors import IngestError
from appliance.ingest.discover import InputResult, iter_inputs, parse_file
from appliance.ingest.mqtt import (
    is_xls_dump,
    load_json,
    parse_json_messages,
    parse_xls_dump,
    read_message,
    read_message_folder,
    single_trace,
)
from appliance.ingest.setitec import parse_setitec
from appliance.trace import Trace

__all__ = ["InputResult", "iter_inputs", "parse_bytes", "parse_file", "parse_json_messages",
           "parse_setitec"]


def parse_bytes(data: bytes, source: str) -> Trace:
    """One hole from raw bytes, whatever the shape; the REST API accepts the same bodies.

    Accepted shapes:

    - Setitec text (any variant, tab or ';' separated), or a bare Datas table;
    - ``{"trace": <Trace message>, "result": <ResultManagement message>,
      "assets": [<Heads/Controllers/CuttingTools/Servos/Tools message>, ...]}`` ("assets"
      optional): the message pair of one hole. content_hash is the sha256 of the compact
      JSON serialisation of the trace message followed by that of the result message;
    - ``[<message>, <message>, ...]``: the same messages as a list (exactly one hole);
    - a single ua-data message with full per-sample arrays under StepResultValues;
    - an XLS dumped as JSON (section -> key -> value or column array).

    A Trace message alone is rejected: stop codes and no-load currents are in its Result.
    """
    try:
        head = data.lstrip(b" \t\r\n\xef\xbb\xbf")[:1]  # a UTF-8 BOM may lead JSON
        if head in (b"{", b"["):
            return _parse_json_body(data, source)
        return parse_setitec(data, source)
    except IngestError:
        raise
    except Exception as exc:  # a bug: still reported against the input, never a traceback
        raise IngestError(source, f"unexpected {type(exc).__name__} while parsing: {exc}") from exc


def _dump(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _parse_json_body(data: bytes, source: str) -> Trace:
    obj = load_json(data, source)
    if isinstance(obj, dict) and "trace" in obj and "result" in obj:
        assets = obj.get("assets") or []
        if not isinstance(assets, list):
            raise IngestError(source, "'assets' must be a list of messages", "assets")
        messages = {"trace": _dump(obj["trace"]), "result": _dump(obj["result"])}
        messages.update({f"assets[{i}]": _dump(a) for i, a in enumerate(assets)})
        return _one_hole(messages, source)
    if isinstance(obj, list):
        return _one_hole({f"[{i}]": _dump(m) for i, m in enumerate(obj)}, source)
    if is_xls_dump(obj):
        return parse_xls_dump(obj, data, source)
    message = read_message(obj, data, source, source)
    if message.kind == "single":
        return single_trace(message, source)
    if message.kind == "trace":
        raise IngestError(source, "a Trace message alone: send it with its Result message as "
                                  '{"trace": {...}, "result": {...}}')
    raise IngestError(source, f"a {message.asset or 'Result'} message alone holds no samples")


def _one_hole(messages: dict[str, bytes], source: str) -> Trace:
    """The one hole of a request body; errors name the body and the part of it."""
    entries = read_message_folder(messages, "")
    for entry in entries:
        if entry.error is not None:
            where = f"{entry.name}: {entry.error.where}" if entry.error.where else entry.name
            raise IngestError(source, entry.error.problem, where)
    traces = [e.trace for e in entries if e.trace is not None]
    if len(traces) != 1:
        raise IngestError(source, f"the body holds {len(traces)} holes; send exactly one")
    return dataclasses.replace(traces[0], meta=dataclasses.replace(traces[0].meta,
                                                                   source=source))
