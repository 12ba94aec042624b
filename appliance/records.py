"""The records that cross every boundary: what the store returns, the services use, the API
serialises and the TUI decodes, each declared once, here.

Frozen msgspec Structs with no I/O, so that any room (the TUI too, which reaches the daemon
over HTTP only) may import them: `msgspec.json.encode(job)` is the API's JSON of a job and
`msgspec.convert(body, Job)` the TUI's reading of it. A record changes by
`msgspec.structs.replace`, never in place, so one handed to another thread stays as it was.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypedDict

import msgspec
from msgspec import Meta, Struct

# -- training jobs ---------------------------------------------------------------------------

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JOB_ENDED: tuple[JobStatus, ...] = ("succeeded", "failed", "cancelled")
SEARCH_KIND = "tune"  # a hyperparameter search: it ends with best.json, not a candidate


class JobParams(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a job was asked for (POST /jobs/fine-tune or /jobs/tune, or the nightly routine);
    what was not asked is left out of its JSON."""

    folds: int | None = None
    epochs: int | None = None
    head_only: bool = False
    architecture: str | None = None  # None: the parent's
    seed: int | None = None
    trials: int | None = None  # a search's
    auto_promote: bool = False  # activate the candidate when every gate passes
    requested_by: str | None = None


class AutoRollback(Struct, frozen=True, kw_only=True):
    """The check of a promoted candidate against the model it replaced, on the latest
    confirmed holes (appliance.registry: auto_rollback_check)."""

    status: str  # ok | skipped | rolled back
    why: str | None = None
    problems: tuple[str, ...] | None = None


class JobProgress(Struct, frozen=True, kw_only=True):
    """How far a job got and, once it ended, what it gave; None: not known (yet)."""

    fraction: float | None = None  # 0..1
    fold: int | None = None
    folds: int | None = None
    epoch: int | None = None
    epochs: int | None = None
    train_loss: float | None = None
    val_loss: float | None = None
    eta_s: float | None = None
    last_event: str | None = None
    dataset_holes: int | None = None
    dataset_hash: str | None = None
    dataset_at: str | None = None  # when the snapshot was taken (the nightly counts from it)
    parent: str | None = None
    gate_passed: bool | None = None
    failing_gates: tuple[str, ...] | None = None
    activated: bool | None = None
    auto_rollback: AutoRollback | None = None
    pid: int | None = None  # the training child's process id while it runs
    resumed_at: str | None = None  # when a daemon restart picked the job up again
    # a search (kind tune)
    trials_done: int | None = None
    trials_total: int | None = None
    best_objective: float | None = None
    best_params: dict[str, float | int | str | None] | None = None  # None: not searched
    best_trial: int | None = None
    trials_finished: int | None = None

    def merged(self, other: JobProgress) -> JobProgress:
        """This progress with every field that `other` knows (not None) taken from it."""
        known = {name: value for name in other.__struct_fields__
                 if (value := getattr(other, name)) is not None}
        return msgspec.structs.replace(self, **known)


class Job(Struct, frozen=True, kw_only=True):
    """A training job: GET /jobs/{id}, and each event of its stream."""

    job_id: str = msgspec.field(name="id")
    kind: str  # fine-tune | nightly | tune
    status: JobStatus
    params: JobParams
    progress: JobProgress
    created_at: str | None  # ISO 8601 UTC
    started_at: str | None
    finished_at: str | None
    error: str | None
    candidate_version: str | None
    log_tail: tuple[str, ...]  # the child's last lines of output

    @property
    def ended(self) -> bool:
        return self.status in JOB_ENDED

    @property
    def is_search(self) -> bool:
        return self.kind == SEARCH_KIND


class JobChange(TypedDict, total=False):
    """The fields of a job that change while it runs (the store's jobs.update, the runner)."""

    status: JobStatus
    progress: JobProgress
    started_at: str
    finished_at: str
    error: str | None
    candidate_version: str | None
    log_tail: tuple[str, ...]


# -- the audit trail -------------------------------------------------------------------------


class AuditEntry(Struct, frozen=True, kw_only=True):
    """Who did what to which subject, and when: GET /audit."""

    audit_id: int
    at: str  # ISO 8601 UTC
    actor: str
    action: str
    subject: str | None
    detail: dict[str, Any] | None


# -- model versions --------------------------------------------------------------------------

ModelStatus = Literal["candidate", "active", "retired", "rejected"]
ActivationAction = Literal["activate", "rollback", "auto-rollback"]
BLOCKING_GATE_STATUSES = ("fail", "insufficient evidence")  # what stops a promotion


class GateOutcome(Struct, frozen=True, kw_only=True):
    """What one gate said of a version (appliance.gates: GateResult, as stored)."""

    gate: str  # integrity | parity | accuracy | latency
    status: str  # pass | fail | insufficient evidence | skipped
    summary: str = ""
    details: dict[str, Any] = {}

    @property
    def blocking(self) -> bool:
        return self.status in BLOCKING_GATE_STATUSES


class SetAside(Struct, frozen=True, kw_only=True):
    """Why, when and by whom a version was rejected or its folder removed."""

    why: str
    at: str  # ISO 8601 UTC
    by: str


class GateVerdict(Struct, frozen=True, kw_only=True):
    """A version's stored gate report: what its gates said, and why it was set aside (by an
    operator, a failed job, or the registry's recovery when its folder had gone)."""

    version: str | None = None  # None: set aside before any gate ran
    passed: bool | None = None
    compared_with: str | None = None  # the version that was active when it was gated
    at: str | None = None
    gates: tuple[GateOutcome, ...] = ()
    rejected: SetAside | None = None
    removed: SetAside | None = None  # its folder is gone; the row stays for the history
    recovery: str | None = None

    @property
    def blocking(self) -> tuple[GateOutcome, ...]:
        return tuple(g for g in self.gates if g.blocking)


class ModelVersion(Struct, frozen=True, kw_only=True):
    """A registered model version as the store holds it. Its `path` is the box's own: clients
    get a ModelSummary."""

    version: str
    parent: str | None
    architecture: str | None
    path: str  # the sealed folder, absolute
    created_at: str | None  # ISO 8601 UTC
    status: ModelStatus
    gate_report: GateVerdict | None  # None: not gated (a folder adopted by recovery)
    metrics: dict[str, Any] | None
    dataset_hash: str | None
    manifest: dict[str, Any] | None

    @property
    def gate_passed(self) -> bool | None:
        return None if self.gate_report is None else self.gate_report.passed


class ModelSummary(Struct, frozen=True, kw_only=True):
    """A model version as clients see it: GET /models and each answer that changes one."""

    version: str
    parent: str | None
    architecture: str | None
    created_at: str | None
    status: ModelStatus
    active: bool  # the version serving estimates
    dataset_hash: str | None
    gate_passed: bool | None  # None: not gated
    metrics: dict[str, Any]  # paths in it shown relative to the home


class ModelDetail(Struct, frozen=True, kw_only=True):
    """GET /models/{version}: the version with its card (the folder's README.md), gate report
    and manifest, paths shown relative to the home."""

    model: ModelSummary
    card: str | None
    gate_report: GateVerdict | None
    manifest: dict[str, Any]


class Activation(Struct, frozen=True, kw_only=True):
    """One entry of the activation log: GET /models/activations, newest first."""

    activation_id: int
    at: str  # ISO 8601 UTC
    version: str
    previous_version: str | None
    action: ActivationAction
    actor: str
    reason: str | None


# -- holes, labels, predictions ---------------------------------------------------------------

LabelOrigin = Literal["operator", "import", "auto"]


class Estimate(Struct, frozen=True, kw_only=True):
    """What an estimator said of one hole (appliance.points.DepthEstimate as it is served):
    GET /holes/{id}/estimate, POST /estimate, a stored prediction's."""

    entry_mm: float | None
    transition_mm: float | None
    exit_mm: float | None
    spread_mm: dict[str, float | None]  # per point: how far the ensemble's members disagree
    presence: dict[str, float]  # per point: the chance that it exists
    confidence: dict[str, float | None]
    model_version: str | None  # None: the rule-based estimator
    estimator: str  # ensemble | heuristic
    note: str | None = None  # e.g. why the fallback estimator answered
    review_priority: float | None = None  # calibrated chance (0..1) that it is wrong


class Prediction(Struct, frozen=True, kw_only=True):
    """A stored estimate of a hole, served (shadow False) or scored beside it (shadow True)."""

    prediction_id: int
    hole_id: str
    created_at: str  # ISO 8601 UTC
    shadow: bool
    estimate: Estimate


class Label(Struct, frozen=True, kw_only=True):
    """A hole's depth points as a person (or an import) set them; labels are append-only and
    a hole's latest is its truth: PUT /holes/{id}/label, GET /holes/{id}/labels."""

    label_id: int
    hole_id: str
    entry_mm: float | None  # None: the point is absent
    transition_mm: float | None
    exit_mm: float | None
    by: str
    at: str  # ISO 8601 UTC
    origin: LabelOrigin
    # the estimate the operator was shown when confirming (stored as it was served then)
    from_estimate: dict[str, Any] | None = None
    detail: dict[str, Any] | None = None  # who through which door; an import's method, notes


# documented, not enforced: an answer is never refused for what the engine computed
ReviewPriority = Annotated[float, Meta(description=(
    "calibrated chance (0..1) that the estimate is wrong; null where the estimate carries "
    "none (an older stored estimate, an estimator that cannot judge)"))]


class Hole(Struct, frozen=True, kw_only=True):
    """A stored hole with its latest label: GET /holes and GET /holes/{id}. The store leaves
    the estimate fields empty; the daemon's HoleService fills them from its latest served
    estimate (msgspec.structs.replace)."""

    hole_id: str = msgspec.field(name="id")
    source: str
    variant: str
    n_samples: int
    depth_min_mm: float | None
    depth_max_mm: float | None
    ingested_at: str  # ISO 8601 UTC
    labelled: bool
    label: Label | None  # the latest: the hole's truth
    estimate: Estimate | None = None
    uncertainty_mm: float | None = None  # largest ensemble spread of the estimate
    review_priority: ReviewPriority | None = None  # the estimate's; orders needs-review
    source_group: str | None = None
    file_version: int | None = None
    cycle_date: str | None = None
    drill_serial: str | None = None
    head_name: str | None = None
    head_local_counter: int | None = None
    exam: bool | None = None  # in the frozen exam set (never trained on); a single hole's read


class HolePage(Struct, frozen=True, kw_only=True):
    """GET /holes: a page of holes in the asked order, and how many match in all."""

    items: list[Hole]
    total: int
    limit: int
    offset: int


# -- drift and live accuracy -----------------------------------------------------------------

DriftState = Literal["learning", "ok", "alarm"]


class DriftSignal(Struct, frozen=True):
    """One CUSUM of a drill's drift watch (torque, presence, residual_exit, ...)."""

    name: str
    statistic: float | None  # None: not computed yet (JSON has no NaN)
    threshold: float
    state: DriftState

    @property
    def in_alarm(self) -> bool:
        return self.state == "alarm"


class DrillDrift(Struct, frozen=True):
    """A drill's drift state after its latest hole (or reset): GET /drift, one per drill."""

    drill: str  # the trace's drill serial; "unknown" for holes without one
    state: DriftState
    holes: int  # the drill's holes in arrival order, resets included
    alarm_at_hole: int | None  # `holes` when the current alarm was raised
    since: str | None  # ISO time of the hole that raised the current alarm
    signals: tuple[DriftSignal, ...]

    @property
    def alarmed_signals(self) -> tuple[DriftSignal, ...]:
        return tuple(s for s in self.signals if s.in_alarm)


class WindowAccuracy(Struct, frozen=True):
    """The served estimates against what operators then confirmed, over the last N."""

    window: int  # the last N confirmations asked for
    holes: int  # how many there were
    entry_mae_mm: float | None  # over holes where both label and estimate have the point
    transition_mae_mm: float | None
    exit_mae_mm: float | None
    presence_accuracy: float | None  # share of holes whose three presences were all right

    def mae(self, point: str) -> float | None:
        return {"entry": self.entry_mae_mm, "transition": self.transition_mae_mm,
                "exit": self.exit_mae_mm}[point]


class LiveAccuracy(Struct, frozen=True):
    """How far a version's served estimates were from what operators then confirmed: GET
    /models/active's live_accuracy (appliance.monitor.accuracy computes it)."""

    model_version: str
    confirmed: int  # confirmations of its estimates in all
    windows: tuple[WindowAccuracy, ...]


# -- hyperparameter searches -----------------------------------------------------------------

TrialState = Literal["complete", "pruned", "fail", "running"]
ParamValue = float | int | str


class Trial(Struct, frozen=True, kw_only=True):
    """One trial of a search (a `tune` job's trials.csv): GET /jobs/{id}/trials. A pruned,
    failed or running trial has no objective nor figures; its parameters it has."""

    number: int
    state: TrialState
    objective: float | None  # mean MAE mm + 1 mm per wrong presence, out of fold; lower is better
    mae_entry_mm: float | None
    mae_transition_mm: float | None
    mae_exit_mm: float | None
    presence_error: float | None  # the share of wrong presences, 0..1
    duration_s: float | None
    # lr, head_epochs, augment_strength (and width, patch_length, stem_dilations for a fresh
    # model), in the search's order
    params: dict[str, ParamValue]


# -- the daemon's health, keys, bus and shadow scoring ----------------------------------------

HealthStatus = Literal["ok", "degraded"]


class Health(Struct, frozen=True, kw_only=True):
    """GET /health, open: enough for a liveness probe, nothing about the box."""

    status: HealthStatus
    version: str
    active_model: str | None


class StoreHealth(Struct, frozen=True, kw_only=True):
    ok: bool
    path: str  # the store file, relative to the home
    holes: int | None  # None: the store could not count them
    labelled_holes: int | None


class DiskHealth(Struct, frozen=True, kw_only=True):
    """The disk holding the home."""

    free_bytes: int
    total_bytes: int
    free_fraction: float


class HealthDetails(Struct, frozen=True, kw_only=True):
    """GET /health/details: store, disk, running job (its paths scrubbed), schedule."""

    status: HealthStatus
    version: str
    store: StoreHealth
    active_model: str | None
    estimator: str  # ensemble | heuristic
    running_job: Job | None
    disk: DiskHealth
    nightly_next: str | None  # ISO 8601 UTC
    open_reads: bool


class ApiKey(Struct, frozen=True, kw_only=True):
    """A key as listed (GET /keys, DELETE /keys/{name}): never the key itself."""

    name: str
    role: str  # integration | operator | admin; "" for a key revoked before it was listed
    created_at: str | None  # ISO 8601 UTC


class BusStatus(Struct, frozen=True):
    """The rig's MQTT bus: GET /mqtt."""

    enabled: bool
    broker: str | None
    client_id: str | None
    connected: bool
    connected_since: str | None
    last_message_at: str | None
    pending: int  # messages waiting for their partners
    unpublished: int  # answers not yet acknowledged by the broker
    reconnects: int
    counts: dict[str, int]  # outcome -> count (store totals; *_since_start in memory)


class ShadowReport(Struct, frozen=True, kw_only=True):
    """A candidate scored beside the active model on new holes, its answers never served:
    GET and PUT /models/shadow."""

    version: str | None  # the model running in shadow now, None when none
    holes: int  # holes with both a served and a shadow estimate
    labelled: int  # of those, holes with a confirmed label (scored below)
    shadow_versions: tuple[str, ...]
    served: dict[str, Any] | None = None  # metrics of the served estimates on labelled holes
    shadow: dict[str, Any] | None = None  # metrics of the shadow estimates on the same holes
