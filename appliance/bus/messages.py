"""One MQTT message off the rig's bus -> what it is and which hole it belongs to.

Topics (mqtt-contract.md): `{root}/{toolbox}/{tool}/ResultManagement` (result),
`.../ResultManagement/Trace` (trace), `.../AssetManagement/Heads` (heads). A hole's messages
share the toolbox and tool levels, the SourceTimestamp string and result id (ResultId =
StepResultId = LifeTimeCycleCounter); the bus pairs on those, never on arrival time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from appliance.errors import IngestError
from appliance.ingest.mqtt import (
    Message,
    asset_values,
    load_json,
    norm_id,
    read_message,
    result_id,
    result_values,
    trace_result_id,
)

Kind = Literal["result", "trace", "heads"]
_SUFFIXES: dict[tuple[str, ...], Kind] = {
    ("ResultManagement",): "result",
    ("ResultManagement", "Trace"): "trace",
    ("AssetManagement", "Heads"): "heads",
}


def subscriptions(root: str) -> list[str]:
    """The topic filters the bridge subscribes to."""
    return ["/".join((root, "+", "+", *suffix)) for suffix in _SUFFIXES]


@dataclass(frozen=True)
class HoleKey:
    """What a hole's messages share. `stamp` may be None (a message without timestamps):
    then it pairs on the other three."""

    toolbox: str
    tool: str
    result_id: str
    stamp: str | None

    @property
    def text(self) -> str:
        return f"{self.toolbox}/{self.tool}/{self.result_id}@{self.stamp or '-'}"

    def matches(self, other: HoleKey) -> bool:
        return (self.toolbox, self.tool, self.result_id) == (
            other.toolbox, other.tool, other.result_id) and (
            self.stamp is None or other.stamp is None or self.stamp == other.stamp)


@dataclass(frozen=True)
class Incoming:
    """A message as received: enough to store it durably before anything else."""

    topic: str
    payload: bytes
    digest: str  # of topic + payload: a redelivery or a re-sent copy is recognised by it


def incoming(topic: str, payload: bytes) -> Incoming:
    digest = hashlib.sha256(topic.encode("utf-8", "surrogateescape") + b"\0" + payload)
    return Incoming(topic, payload, digest.hexdigest())


@dataclass(frozen=True)
class Classified:
    """A readable message of a hole: its kind, key and the parsed message (for pairing)."""

    kind: Kind
    key: HoleKey
    message: Message
    machine_id: str | None = None  # result: the unit's SerialNumber
    head_id: str | None = None  # heads: the head's serial number


def topic_parts(topic: str, root: str) -> tuple[str, str, Kind]:
    """(toolbox, tool, kind) of a topic under root; ValueError when it is not one of ours."""
    levels = topic.split("/")
    if len(levels) < 4 or levels[0] != root:
        raise ValueError(f"topic {topic!r} is not under {root}/+/+")
    kind = _SUFFIXES.get(tuple(levels[3:]))
    if kind is None or not levels[1] or not levels[2]:
        raise ValueError(f"topic {topic!r} is not a result, trace or heads topic")
    return levels[1], levels[2], kind


def classify(msg: Incoming, root: str) -> Classified:
    """Parse and key one message; IngestError (naming the topic) when it cannot be used."""
    where = f"mqtt:{msg.topic}"
    try:
        toolbox, tool, kind = topic_parts(msg.topic, root)
    except ValueError as exc:
        raise IngestError(where, str(exc)) from None
    parsed = read_message(load_json(msg.payload, where), msg.payload, msg.topic, where)
    if kind == "result":
        if parsed.kind != "result":
            raise IngestError(where, f"a {parsed.kind} message on a result topic")
        rid = result_id(parsed)
        if rid is None:
            raise IngestError(where, "the result carries no ResultId", "ResultMetaData.ResultId")
        machine = norm_id(result_values(parsed).get("SerialNumber"))
        return Classified(kind, HoleKey(toolbox, tool, rid, parsed.stamp), parsed, machine)
    if kind == "trace":
        if parsed.kind != "trace":
            raise IngestError(where, f"a {parsed.kind} message on a trace topic")
        rid = trace_result_id(parsed, where)
        return Classified(kind, HoleKey(toolbox, tool, rid, parsed.stamp), parsed)
    if parsed.kind != "asset" or parsed.asset != "Heads":
        raise IngestError(where, f"a {parsed.asset or parsed.kind} message on a heads topic")
    values = asset_values([parsed])
    counter = next((norm_id(v) for k, v in values.items() if k.endswith("LifeTimeCycleCounter")),
                   None)
    if counter is None:
        raise IngestError(where, "the heads message carries no LifeTimeCycleCounter",
                          "LifetimeCounters.0.LifeTimeCycleCounter")
    head = norm_id(values.get("Heads.Identification.SerialNumber"))
    return Classified(kind, HoleKey(toolbox, tool, counter, parsed.stamp), parsed, head_id=head)

