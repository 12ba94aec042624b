"""The API's request and response bodies (msgspec Structs: validated in, documented in OpenAPI).

Field names follow the domain: depth points are `entry_mm`, `transition_mm`, `exit_mm` in every
body, exactly as in appliance.points.DepthEstimate. A record the domain already declares
(appliance.records: Job, AuditEntry, Hole, Label, Estimate) is served as it is, not copied
into a body of its own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from msgspec import Meta, Struct

from appliance.records import DrillDrift, Estimate, Hole, Job, LiveAccuracy, ModelSummary

Depth = Annotated[float, Meta(ge=-100_000.0, le=100_000.0, description="depth in mm")]
Name = Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^\S(.*\S)?$")]
Reason = Annotated[str, Meta(min_length=1, max_length=1000)]
Version = Annotated[str, Meta(min_length=1, max_length=200)]


class LabelIn(Struct, forbid_unknown_fields=True):
    """An operator's depth points for a hole; null means the point is absent."""

    entry_mm: Depth | None
    transition_mm: Depth | None
    exit_mm: Depth | None
    by: Name


class IngestOut(Struct):
    hole: Hole
    estimate: Estimate
    created: bool


class TraceOut(Struct):
    """A hole's samples for plotting; `index` are the original sample numbers kept."""

    hole_id: str
    n_samples: int
    n_points: int
    index: list[int]
    depth_mm: list[float | None]  # null: a sample the log left empty (JSON has no NaN)
    torque_a: list[float | None]
    thrust_a: list[float | None]
    step: list[int]


class FineTuneIn(Struct, forbid_unknown_fields=True):
    folds: Annotated[int, Meta(ge=2, le=24)] = 5
    epochs: Annotated[int, Meta(ge=1, le=1000)] = 20
    head_only: bool = False
    architecture: Literal["patchtsmixer", "cnn"] | None = None  # None: the parent's
    seed: Annotated[int, Meta(ge=0, le=2**31 - 1)] | None = None


class TuneIn(Struct, forbid_unknown_fields=True):
    trials: Annotated[int, Meta(ge=1, le=500)] = 20
    folds: Annotated[int, Meta(ge=2, le=24)] = 5
    epochs: Annotated[int, Meta(ge=1, le=1000)] = 10


class NightlyIn(Struct, forbid_unknown_fields=True):
    force: bool = False  # start even with fewer new labels than the configured minimum


class NightlyOut(Struct):
    started: bool
    reason: str
    new_labels: int
    min_new_labels: int
    job: Job | None


class ActiveModelOut(ModelSummary, frozen=True, kw_only=True):
    """GET /models/active: the serving version, and how it has done since it was activated."""

    live_accuracy: LiveAccuracy | None = None  # None: no confirmed hole since


class DriftOut(Struct):
    drills: list[DrillDrift]


class ActivateIn(Struct, forbid_unknown_fields=True):
    force: bool = False
    reason: Reason | None = None  # required with force


class RollbackIn(Struct, forbid_unknown_fields=True):
    version: Version | None = None  # None: the version active before the current one
    reason: Reason | None = None


class ShadowIn(Struct, forbid_unknown_fields=True):
    version: Version | None = None  # None: stop shadow scoring


class KeyIn(Struct):
    name: str
    role: Literal["integration", "operator", "admin"]


class NewKeyOut(Struct):
    name: str
    role: str
    key: str  # shown this once; the daemon keeps only its hash


class BackupOut(Struct):
    """A backup the daemon took into <home>/backups/<name>/ (its manifest.json lists every
    file with its sha256); `appliance backup DIR` moves it off to DIR."""

    name: str
    created_at: str
    appliance_version: str
    schema_version: int
    counts: dict[str, int]  # rows per table in the backup: holes, samples, labels, ...
    active_model: str | None
    models: list[str]  # the model versions whose folders it holds
    files: int
    bytes: int


class ErrorOut(Struct):
    status_code: int
    detail: str


def utc_text(value: datetime | None) -> str | None:
    """A query's time as naive UTC ISO text, the store's convention (no zone = UTC)."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat()

