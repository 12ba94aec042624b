"""JSON trace messages (format doc section 8) -> Trace.

Shapes understood:

- ua-data messages, one object each: ``Trace`` (per-sample arrays under
  ``...Trace.StepTraces.<X>Trace``), ``ResultManagement``/``Result`` (per-step values,
  joined to the trace on device segment + ResultId == StepResultId) and asset companions
  (``Heads``, ``Controllers``, ``CuttingTools``, ``Servos``, ``Tools``) that only add metadata;
- a single ua-data message holding full per-sample arrays under ``StepResultValues``
  (data/mqtt/extra/data.json, data-wh.json);
- an XLS dumped as JSON, section -> key -> value or column array (raw.json).

Every failure is an IngestError naming the message file and the field.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeGuard

import msgspec
import numpy as np

from appliance.errors import IngestError
from appliance.ingest.setitec import (
    POSITION,
    DatasTable,
    LogSections,
    build_meta,
    resolve_columns,
    trace_from_table,
)
from appliance.ingest.values import clean_text, iso_date, to_opt_bool, to_opt_int
from appliance.trace import Trace, TraceMeta

_MISSING = object()
_TRACE_FIELD = re.compile(
    r"ResultContent\.Trace\.StepTraces\.(\w+?)Trace\."
    r"(StepResultId|SamplingInterval|StepTraceContent\[0\]\.Values)$")
_RESULT_FIELD = re.compile(
    r"ResultManagement\.Results\.\d+\.(?:ResultMetaData|ResultContent\.StepResults\.\d+\."
    r"StepResultValues|ResultContent\.OverallResultValues)\.(\w+?)(?:\.MeasuredValue)?$")
_ASSET_FIELD = re.compile(r"AssetManagement\.Assets\.(\w+)\.\d+\.(.+)$")
# Trace channel -> Trace attribute (format doc section 8 table).
_CHANNELS = {"Position": "position", "IntensityTorque": "torque", "IntensityThrust": "thrust",
             "StepNumber": "step", "Power": "power", "GapLength": "gap"}
# Per-sample arrays of the single-message shape -> the same names.
_SINGLE_CHANNELS = {"Position": "position", "Torque": "torque", "Thrust": "thrust",
                    "TorqueEmpty": "torque_empty", "ThrustEmpty": "thrust_empty",
                    "TorquePower": "power", "StepNb": "step", "GapLength": "gap"}
STOP_CODE_SAMPLES = 2  # the controller flags a step's last rows; 2 is the fewest seen in logs


@dataclass
class Message:
    """One parsed ua-data message: its kind and Payload fields below the device segment."""

    name: str
    raw: bytes
    kind: str  # trace | result | single | asset
    device: str
    family: str  # ADrilling | AFastening
    fields: dict[str, object]
    asset: str | None = None  # Heads, Controllers, ... for asset messages
    # the entries' SourceTimestamp (device clock; the same string across a hole's messages):
    # one of the keys the bus pairs a hole's messages on
    stamp: str | None = None


@dataclass
class FolderEntry:
    """The outcome for one message file of a folder (used by discover.iter_inputs)."""

    name: str
    trace: Trace | None = None
    error: IngestError | None = None
    companion: bool = False


@dataclass
class HoleMessages:
    trace: Message
    result: Message | None = None
    assets: list[Message] = field(default_factory=list)


def parse_json_messages(messages: dict[str, bytes], source: str) -> list[Trace]:
    """The holes in one folder's messages (file name -> bytes); raises the first problem."""
    entries = read_message_folder(messages, source)
    for entry in entries:
        if entry.error is not None:
            raise entry.error
    traces = [e.trace for e in entries if e.trace is not None]
    if not traces:
        raise IngestError(source, "no Trace message (or full-array message) among "
                                  f"{sorted(messages)}")
    return traces


def read_message_folder(messages: dict[str, bytes], source: str) -> list[FolderEntry]:
    """Each message file's outcome: a trace, an error, or a companion that was used."""
    entries: dict[str, FolderEntry] = {}
    parsed: list[Message] = []
    for name in sorted(messages):
        where = f"{source}/{name}" if source else name
        try:
            obj = load_json(messages[name], where)
            if is_xls_dump(obj):
                entries[name] = _guard(name, where,
                                       partial(parse_xls_dump, obj, messages[name], where))
                continue
            parsed.append(read_message(obj, messages[name], name, where))
        except IngestError as exc:
            entries[name] = FolderEntry(name, error=exc)
    unreadable = sorted(entries)  # only load failures so far
    for message in parsed:
        if message.kind == "single":
            where = f"{source}/{message.name}" if source else message.name
            entries[message.name] = _guard(message.name, where,
                                           partial(single_trace, message, where))
        elif message.kind == "asset":
            entries[message.name] = FolderEntry(message.name, companion=True)
    traces = [m for m in parsed if m.kind == "trace"]
    results = [m for m in parsed if m.kind == "result"]
    used: set[str] = set()
    for message in traces:
        where = f"{source}/{message.name}" if source else message.name
        hole = HoleMessages(message, assets=[a for a in parsed
                                      if a.kind == "asset" and a.device == message.device])
        try:
            key = trace_result_id(message, where)
        except IngestError as exc:
            entries[message.name] = FolderEntry(message.name, error=exc)
            continue
        for result in results:
            if result.device == message.device and result_id(result) == key:
                hole.result = result
                used.add(result.name)
                break
        if hole.result is None:
            entries[message.name] = FolderEntry(message.name, error=IngestError(
                where, f"no Result message for device {message.device!r} with ResultId "
                       f"{key} (the trace needs its per-step stop codes and no-load currents)"))
            continue
        entries[message.name] = _guard(message.name, where, partial(joined_trace, hole, where))
        entries[hole.result.name] = FolderEntry(hole.result.name, companion=True)
    for result in results:
        if result.name not in used:
            where = f"{source}/{result.name}" if source else result.name
            hint = f" (unreadable here: {', '.join(unreadable)})" if unreadable else ""
            entries[result.name] = FolderEntry(result.name, error=IngestError(
                where, f"Result message for device {result.device!r} ResultId "
                       f"{result_id(result)} has no matching Trace message{hint}"))
    _fold_xls_dumps(entries)
    return [entries[name] for name in sorted(entries)]


def _fold_xls_dumps(entries: dict[str, FolderEntry]) -> None:
    """An XLS dump of the same hole as a joined Trace is one hole, not two.

    The dump then only lends the trace its richer metadata (Program, file version) and is
    reported as a companion, so that the store does not keep the hole twice.
    """
    dumps = [e for e in entries.values()
             if e.trace is not None and e.trace.meta.extra.get("shape") == "xls dump"]
    joined = [e for e in entries.values()
              if e.trace is not None and e.trace.meta.extra.get("device")
              and "shape" not in e.trace.meta.extra]
    for dump in dumps:
        for entry in joined:
            a, b = dump.trace, entry.trace
            assert a is not None and b is not None
            if len(a) == len(b) and np.allclose(a.depth_mm, b.depth_mm, atol=5e-4, rtol=0) \
                    and a.meta.head_global_counter == b.meta.head_global_counter:
                extra = {**b.meta.extra, "xls_dump": dump.name}
                meta = replace(b.meta, program=b.meta.program or a.meta.program,
                               file_version=b.meta.file_version or a.meta.file_version,
                               head_name=b.meta.head_name or a.meta.head_name,
                               drill_serial=b.meta.drill_serial or a.meta.drill_serial,
                               extra=extra)
                entry.trace = replace(b, meta=meta)
                dump.trace = None
                dump.companion = True
                break


def _guard(name: str, source: str, build: Callable[[], Trace]) -> FolderEntry:
    try:
        return FolderEntry(name, trace=build())
    except IngestError as exc:
        return FolderEntry(name, error=exc)
    except Exception as exc:  # a bug here must not stop the walk over the other files
        return FolderEntry(name, error=IngestError(
            source, f"unexpected {type(exc).__name__} while parsing: {exc}"))


_TOO_DEEP = ("JSON nested too deeply (about 1,000 levels or more) to read; a trace message "
             "nests a few levels")


def load_json(data: bytes, source: str) -> object:
    if not data.strip():
        raise IngestError(source, "empty JSON input")
    try:
        # msgspec reads a 300 KB trace message ~4x faster than json; whatever it refuses
        # (NaN literals, huge integers, bad input) goes through json, which also says where
        return msgspec.json.decode(data)
    except msgspec.DecodeError:
        pass
    except RecursionError:
        raise IngestError(source, _TOO_DEEP) from None
    try:
        return json.loads(data)
    except UnicodeDecodeError as exc:
        raise IngestError(source, f"not UTF-8 JSON: {exc.reason}",
                          f"byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        cut = " (input cut off?)" if exc.pos >= len(data.rstrip()) - 1 else ""
        raise IngestError(source, f"invalid JSON: {exc.msg}{cut}",
                          f"line {exc.lineno} column {exc.colno}, char {exc.pos}") from None
    except RecursionError:
        raise IngestError(source, _TOO_DEEP) from None


def is_xls_dump(obj: object) -> TypeGuard[dict[str, Any]]:
    return isinstance(obj, dict) and isinstance(obj.get("Datas"), dict) \
        and isinstance(obj.get("General Infos"), dict)


def read_message(obj: object, raw: bytes, name: str, source: str) -> Message:
    """Classify one ua-data message and flatten its Payload below the device segment."""
    if not isinstance(obj, dict):
        raise IngestError(source, f"expected a JSON object, got {type(obj).__name__}")
    body = obj.get("Messages")
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    if not isinstance(body, dict) or not isinstance(body.get("Payload"), dict):
        raise IngestError(source, "not a ua-data message: no Messages.Payload object",
                          "Messages")
    fields: dict[str, object] = {}
    devices: set[str] = set()
    families: set[str] = set()
    stamps: dict[str, int] = {}
    for key, entry in body["Payload"].items():
        namespace, found, path = key.partition(";s=")
        prefix, found2, rest = path.partition("DeviceSet.")
        device, _, sub = rest.partition(".")
        if not found or not found2 or not device or not sub:
            raise IngestError(source, "payload key is not '<ns>;s=...DeviceSet.<device>.<path>'",
                              f"Payload[{key[:80]!r}]")
        devices.add(device)
        families.add(namespace.rstrip("/").rsplit("/", 1)[-1])
        if not isinstance(entry, dict):
            raise IngestError(source, "payload entry is not a {Value, SourceTimestamp} object",
                              f"Payload[{sub!r}]")
        fields[sub] = entry.get("Value", _MISSING)
        stamp = entry.get("SourceTimestamp")
        if isinstance(stamp, str) and stamp:
            stamps[stamp] = stamps.get(stamp, 0) + 1
    if not fields:
        raise IngestError(source, "empty Payload", "Messages.Payload")
    if len(devices) > 1:
        raise IngestError(source, f"payload mixes devices {sorted(devices)}", "Messages.Payload")
    subs = list(fields)
    asset = None
    if any(_TRACE_FIELD.search(s) for s in subs):
        kind = "trace"
    elif any(s.endswith("StepResultValues.Position") for s in subs):
        kind = "single"
    elif any(_RESULT_FIELD.search(s) for s in subs):
        kind = "result"
    elif any(_ASSET_FIELD.match(s) for s in subs):
        kind = "asset"
        match = next(m for m in map(_ASSET_FIELD.match, subs) if m)
        asset = match.group(1)
    else:
        raise IngestError(source, "neither a Trace, a Result nor an asset message",
                          f"Payload[{subs[0][:80]!r}]")
    common = max(stamps, key=stamps.__getitem__) if stamps else None
    return Message(name, raw, kind, devices.pop(), ",".join(sorted(families)), fields, asset,
                   common)


def norm_id(value: object) -> str | None:
    if value is _MISSING or value is None:
        return None
    text = clean_text(value)
    try:
        number = float(text)
    except ValueError:
        return text or None
    return str(int(number)) if math.isfinite(number) and number == int(number) else text


def trace_result_id(message: Message, source: str) -> str:
    ids = {norm_id(v) for k, v in message.fields.items() if k.endswith("StepResultId")}
    ids.discard(None)
    if len(ids) != 1:
        raise IngestError(source, f"trace channels carry {len(ids)} different StepResultIds "
                                  f"{sorted(i for i in ids if i)}", "StepResultId")
    return ids.pop()  # type: ignore[return-value]


def result_values(message: Message) -> dict[str, object]:
    out: dict[str, object] = {}
    for sub, value in message.fields.items():
        match = _RESULT_FIELD.search(sub)
        if match and match.group(1) not in out:
            out[match.group(1)] = value
    return out


def result_id(message: Message) -> str | None:
    return norm_id(result_values(message).get("ResultId", _MISSING))


def asset_values(assets: list[Message]) -> dict[str, object]:
    out: dict[str, object] = {}
    for message in assets:
        for sub, value in message.fields.items():
            match = _ASSET_FIELD.match(sub)
            if match and value is not _MISSING:
                out[f"{match.group(1)}.{match.group(2)}"] = value
    return out


def _array(values: object, source: str, name: str) -> np.ndarray | None:
    """A per-sample channel; None when Values is missing or all null (GapLength)."""
    if values is _MISSING or values is None:
        return None
    if not isinstance(values, list):
        raise IngestError(source, f"{name} Values is not an array", name)
    if not _all_numbers(values):
        # the types present, found at C speed: a 10,000-sample channel checked value by
        # value cost the bus more than estimating the hole
        kinds = set(map(type, values))
        if kinds <= {type(None)}:
            return None
        if not kinds <= {int, float}:  # bool is not a number here; nor is a null among numbers
            for i, v in enumerate(values):
                if isinstance(v, bool) or not isinstance(v, int | float):
                    raise IngestError(source, f"{name}[{i}] is {v!r}, not a number", name)
    # every value is an int or a float by now: fromiter converts them without asarray's
    # first pass over the list to find a common type (~2x faster on a long channel)
    arr = np.fromiter(values, dtype=np.float64, count=len(values))
    if not np.isfinite(arr).all():
        raise IngestError(source, f"{name} holds a non-finite value", name)
    return arr


def _all_numbers(values: list[object]) -> bool:
    """True for a non-empty list of ints and floats (no bool, no null): the usual channel,
    told 3-4x faster than by collecting its types (msgspec's strict check, which refuses a
    bool as a number); anything else takes the slower path that names the culprit."""
    if not values:
        return False
    try:
        msgspec.convert(values, list[int | float])
    except msgspec.ValidationError:
        return False
    return True


def _per_step(values: object) -> list[object]:
    """A step field is a scalar for one step and an array otherwise."""
    if values is _MISSING or values is None:
        return []
    return list(values) if isinstance(values, list) else [values]


def _integral(values: np.ndarray, source: str, name: str, dtype: type) -> np.ndarray:
    rounded = np.rint(values)
    bad = np.flatnonzero((np.abs(values - rounded) > 1e-6) | (np.abs(values) >= 2**31))
    if bad.size:
        raise IngestError(source, f"{name}[{bad[0]}] = {values[bad[0]]} is not a whole number",
                          name)
    whole: np.ndarray = rounded.astype(dtype)
    return whole


def _code(value: object, source: str) -> int:
    """A stop code: bit flags, a whole number that fits the int64 sample array."""
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or value != int(value) or abs(value) >= 2**63:
        raise IngestError(source, f"StopCode {value!r} is not a whole number", "StopCode")
    return int(value)


def _step_runs(step: np.ndarray) -> list[tuple[int, int]]:
    cuts = np.flatnonzero(np.diff(step)) + 1
    starts = np.r_[0, cuts]
    ends = np.r_[cuts, len(step)]
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def _stop_codes(step: np.ndarray, codes: dict[int, int], in_order: list[int] | None = None
                ) -> np.ndarray:
    """Per-sample stop codes: each step's code on its last rows, as the logs write it."""
    out = np.zeros(len(step), dtype=np.int64)
    for index, (start, end) in enumerate(_step_runs(step)):
        if in_order is not None:
            code = in_order[index] if index < len(in_order) else None
        else:
            code = codes.get(int(step[start]))
        if code:
            out[max(start, end - STOP_CODE_SAMPLES):end] = code
    return out


def _check_lengths(arrays: dict[str, np.ndarray | None], source: str) -> int:
    lengths = {k: len(v) for k, v in arrays.items() if v is not None}
    if len(set(lengths.values())) > 1:
        raise IngestError(source, f"channel lengths differ: {lengths}", "Values")
    n = next(iter(lengths.values()))
    if n == 0:
        raise IngestError(source, "the trace has zero samples", "Position")
    return n


def joined_trace(hole: HoleMessages, source: str) -> Trace:
    """A Trace message joined with its Result message (and the folder's asset messages)."""
    channels: dict[str, object] = {}
    interval: object = _MISSING
    for sub, value in hole.trace.fields.items():
        match = _TRACE_FIELD.search(sub)
        if not match:
            continue
        if match.group(2) == "SamplingInterval" and interval is _MISSING:
            interval = value
        elif match.group(2).endswith("Values"):
            channels[match.group(1)] = value
    arrays = {name: _array(channels.get(channel, _MISSING), source, f"{channel}Trace")
              for channel, name in _CHANNELS.items()}
    for required in ("position", "torque", "thrust", "step"):
        if arrays[required] is None:
            channel = next(c for c, n in _CHANNELS.items() if n == required)
            raise IngestError(source, f"the trace lacks {channel}Trace values",
                              f"{channel}Trace.StepTraceContent[0].Values")
    _check_lengths(arrays, source)
    position, torque, thrust, steps = (arrays["position"], arrays["torque"], arrays["thrust"],
                                       arrays["step"])
    assert position is not None and torque is not None and thrust is not None  # required above
    assert steps is not None
    step = _integral(steps, source, "StepNumberTrace", np.int32)
    assert hole.result is not None
    result = result_values(hole.result)
    result_source = f"{source} + {hole.result.name}"
    numbers = [norm_id(v) for v in _per_step(result.get("StepNumber"))]
    extra: dict[str, str] = {"device": hole.trace.device, "family": hole.trace.family,
                             "stop_code": f"step codes from the Result on the last "
                                          f"{STOP_CODE_SAMPLES} samples of each step"}
    ignored = []

    def per_step(name: str) -> dict[int, float] | None:
        values = _per_step(result.get(name))
        if not values:
            return None
        if len(values) != len(numbers):
            ignored.append(f"{name} ({len(values)} values for {len(numbers)} steps)")
            return None
        out = {}
        for number, value in zip(numbers, values, strict=True):
            if number is None or isinstance(value, bool) or not isinstance(value, int | float):
                raise IngestError(result_source, f"{name} value {value!r} for step {number} "
                                                 "is not a number", name)
            out[int(number)] = float(value)
        return out

    def expand(mapping: dict[int, float] | None) -> np.ndarray | None:
        if mapping is None or not set(np.unique(step).tolist()) <= set(mapping):
            return None
        keys = np.array(sorted(mapping), dtype=np.int64)
        values = np.array([mapping[k] for k in keys.tolist()], dtype=np.float64)
        return values[np.searchsorted(keys, step)]

    for number in numbers:
        if number is None or not number.lstrip("-").isdigit():
            raise IngestError(result_source, f"StepNumber {number!r} is not a whole number",
                              "StepNumber")
    stops = per_step("StopCode")
    torque_empty = expand(per_step("IntensityTorqueEmpty"))
    thrust_empty = expand(per_step("IntensityThrustEmpty"))
    if ignored:
        extra["ignored_step_fields"] = "; ".join(ignored)
    stop_code = _stop_codes(step, {k: _code(v, result_source) for k, v in (stops or {}).items()})
    assets = asset_values(hole.assets)
    meta = _json_meta(
        source, hashlib.sha256(hole.trace.raw + hole.result.raw).hexdigest(), result, assets,
        extra, interval)
    return Trace(meta=meta, depth_mm=-position, torque_a=torque,
                 thrust_a=thrust, step=step, stop_code=stop_code,
                 torque_empty_a=torque_empty, thrust_empty_a=thrust_empty,
                 power_w=arrays["power"])


def _json_meta(source: str, content_hash: str, result: dict[str, object],
               assets: dict[str, object], extra: dict[str, str], interval: object) -> TraceMeta:
    def text(value: object) -> str | None:
        return None if value is _MISSING or value is None else clean_text(value) or None

    cycle_date, clock_not_set = iso_date(text(result.get("CreationTime", _MISSING)))
    if clock_not_set:
        extra["clock_not_set"] = "true"
    for key, name in (("result_serial", "SerialNumber"), ("recipe_id", "InternalRecipeId"),
                      ("recipe_version", "InternalRecipeVersion"),
                      ("results_distance_mm", "Distance"), ("cycle_time_s", "CycleTime"),
                      ("job_id", "JobId"), ("customer_info", "CustomerInformation")):
        value = text(result.get(name, _MISSING))
        if value:
            extra[key] = value
    rate = 100.0
    if isinstance(interval, int | float) and not isinstance(interval, bool) and interval > 0:
        rate = float(interval)  # the doc: SamplingInterval 100 matches the 100 Hz logs
    head_name = text(assets.get("Heads.Identification.DefaultInstanceBrowseName", _MISSING))
    local = assets.get("CuttingTools.OperationCounters.OperationCycleCounter", _MISSING)
    return TraceMeta(
        source=source,
        content_hash=content_hash,
        variant="json",
        cycle_date=cycle_date,
        sample_rate_hz=rate,
        drill_serial=text(assets.get("Controllers.Identification.SerialNumber", _MISSING)),
        head_name=head_name,
        head_global_counter=to_opt_int(text(result.get("ResultId", _MISSING)), source,
                                       "ResultId", "ResultId"),
        head_local_counter=to_opt_int(text(local), source, "CuttingTools OperationCycleCounter",
                                      "OperationCycleCounter"),
        cycle_ok=to_opt_bool(text(result.get("ResultEvaluation", _MISSING)), source,
                             "ResultEvaluation", "ResultEvaluation"),
        extra=extra,
    )


def single_trace(message: Message, source: str) -> Trace:
    """The single-message shape: full per-sample arrays under StepResultValues."""
    values: dict[str, object] = {}
    for sub, value in message.fields.items():
        match = _RESULT_FIELD.search(sub)
        if match:
            values.setdefault(match.group(1), value)
    arrays = {name: _array(values.get(key, _MISSING), source, key)
              for key, name in _SINGLE_CHANNELS.items()}
    for required, key in (("position", "Position"), ("torque", "Torque"),
                          ("thrust", "Thrust")):
        if arrays[required] is None:
            raise IngestError(source, f"the message lacks the {key} array",
                              f"StepResultValues.{key}")
    n = _check_lengths(arrays, source)
    position, torque, thrust = arrays["position"], arrays["torque"], arrays["thrust"]
    assert position is not None and torque is not None and thrust is not None  # required above
    extra = {"device": message.device, "family": message.family, "shape": "single message"}
    codes = [_code(c, source) for c in _per_step(values.get("StopCode")) if c is not None]
    if arrays["step"] is not None:
        step = _integral(arrays["step"], source, "StepNb", np.int32)
    else:
        step = _steps_from_empties(arrays, n, len(codes), source)
        extra["step"] = "derived from no-load current changes, numbered from 0"
    stop_code = _stop_codes(step, {}, in_order=codes)
    extra["stop_code"] = (f"step codes in order on the last {STOP_CODE_SAMPLES} samples "
                          "of each step")
    meta = _json_meta(source, hashlib.sha256(message.raw).hexdigest(), values, {}, extra,
                      values.get("SampleRate", _MISSING))
    return Trace(meta=meta, depth_mm=-position, torque_a=torque,
                 thrust_a=thrust, step=step, stop_code=stop_code,
                 torque_empty_a=arrays["torque_empty"], thrust_empty_a=arrays["thrust_empty"],
                 power_w=arrays["power"])


def _steps_from_empties(arrays: dict[str, np.ndarray | None], n: int, n_steps: int,
                        source: str) -> np.ndarray:
    """Step index from no-load current changes (constant within a step, format doc 5)."""
    torque_empty, thrust_empty = arrays["torque_empty"], arrays["thrust_empty"]
    if torque_empty is None or thrust_empty is None:
        raise IngestError(source, "no StepNb array and no no-load currents to find the steps",
                          "StepResultValues.StepNb")
    change = (np.diff(torque_empty) != 0) | (np.diff(thrust_empty) != 0)
    step: np.ndarray = np.r_[0, np.cumsum(change)].astype(np.int32)
    if n_steps and int(step[-1]) + 1 != n_steps:
        raise IngestError(source, f"no StepNb array, and the no-load currents change "
                                  f"{int(step[-1])} times for {n_steps} StopCodes",
                          "StepResultValues.StepNb")
    return step


def parse_xls_dump(obj: dict[str, Any], raw: bytes, source: str) -> Trace:
    """raw.json: an XLS dumped as JSON (section -> key -> value or column array)."""
    sections = LogSections()
    for name, section in obj.items():
        if name == "Datas" or not isinstance(section, dict):
            continue
        if any(isinstance(v, list) for v in section.values()):
            columns = {k: (v if isinstance(v, list) else [v]) for k, v in section.items()}
            rows = max(len(v) for v in columns.values())
            sections.tables[name] = [
                (f"{name}[{i}]", {k: _cell(v[i]) for k, v in columns.items() if i < len(v)})
                for i in range(rows)]
        else:
            sections.kv[name] = {k: _cell(v) for k, v in section.items()}
            for key in section:
                sections.where[(name, key)] = f"{name}.{key}"
    datas = obj["Datas"]
    names = list(datas)
    if POSITION not in datas:
        raise IngestError(source, f"Datas lacks the {POSITION!r} column", "Datas")
    arrays = []
    for name in names:
        arr = _array(datas[name], source, f"Datas.{name}")
        if arr is None:
            raise IngestError(source, f"Datas.{name} has no values", f"Datas.{name}")
        arrays.append(arr)
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1:
        raise IngestError(source, f"Datas columns differ in length: {sorted(lengths)}", "Datas")
    if lengths == {0}:
        raise IngestError(source, "Datas has zero samples", "Datas")
    resolved, fix = resolve_columns(names, len(names), source, 0)
    table = DatasTable(resolved, np.column_stack(arrays), "", 0, fix)
    meta = build_meta(sections, table, source, hashlib.sha256(raw).hexdigest(), variant="json")
    meta.extra.pop("separator", None)
    meta.extra.pop("decimal", None)
    meta.extra["shape"] = "xls dump"
    return trace_from_table(table, meta, source)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)
