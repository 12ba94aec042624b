"""What the appliance publishes back for a hole (mqtt-contract.md, "What goes back").

Two abyss-compatible messages, so supervisory systems need no change, and the appliance's own
fuller one. All three echo the result's SourceTimestamp unchanged and carry the result's
MachineId and ResultId as strings.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import appliance
from appliance.config import MqttConfig
from appliance.store.bus import BusHole


@dataclass(frozen=True)
class Answer:
    """A hole's answer: its estimate (the service's estimate view) or why there is none."""

    hole: BusHole
    estimate: dict[str, Any] | None
    error: str | None = None

    @property
    def model_version(self) -> str | None:
        return (self.estimate or {}).get("model_version")


@dataclass(frozen=True)
class Outgoing:
    topic: str
    payload: bytes


def algo_version(model_version: str | None) -> str:
    return f"appliance {appliance.__version__}, model {model_version or 'rule-based'}"


def _mm(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return round(float(value), 4)


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(b - a, 4)


def _head(answer: Answer) -> dict[str, Any]:
    h = answer.hole
    return {"SourceTimestamp": h.stamp, "MachineId": h.machine_id, "ResultId": h.result_id,
            "HeadId": h.head_id}


def messages(answer: Answer, config: MqttConfig, client_id: str) -> list[Outgoing]:
    """KeyPoints, DepthEstimation and the appliance's payload, in that order. The last names
    the publishing client and the hole's key: the bridge reads its own echo of it."""
    h = answer.hole
    base = f"{config.root}/{h.toolbox}/{h.tool}/"
    version = algo_version(answer.model_version)
    if answer.error is not None or answer.estimate is None:
        reason = answer.error or "no estimate"
        failed = {**_head(answer), "Value": reason, "Error": True, "AlgoVersion": version}
        own = {**_head(answer), "HoleId": h.hole_id, "Error": True, "Reason": reason,
               "ApplianceVersion": appliance.__version__, "ClientId": client_id,
               "HoleKey": h.hole_key}
        return [Outgoing(base + config.keypoints_suffix, _json(failed)),
                Outgoing(base + config.depth_suffix, _json(failed)),
                Outgoing(base + config.appliance_suffix, _json(own))]
    est = answer.estimate
    entry, transition, exit_ = (_mm(est.get(k)) for k in ("entry_mm", "transition_mm",
                                                          "exit_mm"))
    # one layer (no transition): its thickness is exit - entry, and there is no second
    thickness = ([_diff(entry, transition), _diff(transition, exit_)] if transition is not None
                 else [_diff(entry, exit_), None])
    keypoints = {**_head(answer), "Value": [entry, transition, exit_], "AlgoVersion": version}
    depths = {**_head(answer), "Value": thickness, "AlgoVersion": version}
    own = {**_head(answer), "HoleId": h.hole_id, "Error": False,
           "Points": {"entry_mm": entry, "transition_mm": transition, "exit_mm": exit_},
           "Presence": est.get("presence") or {}, "SpreadMm": est.get("spread_mm") or {},
           "ReviewPriority": est.get("review_priority"), "Estimator": est.get("estimator"),
           "ModelVersion": est.get("model_version"), "Note": est.get("note"),
           "ApplianceVersion": appliance.__version__, "ClientId": client_id,
           "HoleKey": h.hole_key}
    return [Outgoing(base + config.keypoints_suffix, _json(keypoints)),
            Outgoing(base + config.depth_suffix, _json(depths)),
            Outgoing(base + config.appliance_suffix, _json(own))]


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
