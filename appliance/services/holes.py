"""Holes through the daemon: bytes in -> parsed, stored, estimated; listings, traces, labels.

Every store call goes through `self._db` (the daemon's serialised store access); parsing,
downsampling and estimation run outside it so one slow request never holds the others up.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import math
import threading
from typing import Any, Literal

import msgspec
import numpy as np

from appliance.engine.workers import Upload
from appliance.errors import NotFoundError, ValidationError
from appliance.estimators.heuristic import read_trace
from appliance.points import POINT_NAMES, DepthEstimate, DepthPoints
from appliance.records import Estimate, Hole, Label
from appliance.redact import shown_source
from appliance.services.db import Db
from appliance.services.downsample import minmax_indices
from appliance.services.drift import DriftService, NewHole
from appliance.services.intake import ingest_upload
from appliance.services.labels import add_label
from appliance.services.metrics import Metrics
from appliance.services.models import ModelService
from appliance.services.trace_cache import DEFAULT_MAX_BYTES, TraceCache
from appliance.trace import Trace

log = logging.getLogger("appliance.holes")
HoleFilter = Literal["all", "labelled", "unlabelled", "needs-review"]
MAX_SOURCE_LEN = 255


def default_source(data: bytes) -> str:
    return f"upload-{hashlib.sha256(data).hexdigest()[:12]}"


def check_source(source: str) -> str:
    """A client's name for its upload: a label only, never used as a path (an absolute path
    is kept as its file name: where a file lay on the client's box is nobody's business)."""
    text = source.strip()
    if not text or len(text) > MAX_SOURCE_LEN or any(ord(c) < 32 for c in text):
        raise ValidationError(f"source {source[:80]!r} must be 1-{MAX_SOURCE_LEN} printable "
                              "characters")
    return shown_source(text)


def estimate_record(estimate: dict[str, Any]) -> Estimate:
    """An estimate as the service holds it (DepthEstimate.as_dict(): the in-memory latest
    estimates, the MQTT bus's answers) as the record the API serves."""
    return Estimate(**estimate)


def uncertainty(estimate: dict[str, Any] | None) -> float | None:
    """The largest member spread of a stored estimate: how unsure the model was."""
    if not estimate:
        return None
    spreads = [v for v in (estimate.get("spread_mm") or {}).values() if v is not None]
    return float(max(spreads)) if spreads else None


def review_priority(estimate: dict[str, Any] | None) -> float | None:
    """The estimate's calibrated chance of being wrong; None when it carries none (never
    estimated, or stored before estimates carried one) or a value that is not a number."""
    value = (estimate or {}).get("review_priority")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def with_estimate(hole: Hole, estimate: dict[str, Any] | None, **changes: Any) -> Hole:
    """The stored hole with its latest estimate (as the service holds it) and what the review
    queue reads of that, and any other changes of its fields (one copy for all)."""
    return msgspec.structs.replace(
        hole, estimate=None if estimate is None else estimate_record(estimate),
        uncertainty_mm=uncertainty(estimate), review_priority=review_priority(estimate),
        **changes)


ReviewKey = tuple[int, float, float, float]


def review_key(estimate: dict[str, Any] | None) -> ReviewKey:
    """Sort key of the review queue, smallest first: holes never estimated (nothing is known
    of them), then by review priority, highest first, then the estimates without one (stored
    before priorities existed: a spread in mm does not compare with a probability) by the
    older order, largest member spread first, then least confident."""
    if estimate is None:
        return (0, 0.0, 0.0, 0.0)
    priority = review_priority(estimate)
    spread = uncertainty(estimate)
    rest = (-(spread if spread is not None else math.inf), _confidence(estimate))
    if priority is not None:
        return (1, -priority, *rest)
    return (2, 0.0, *rest)


class HoleService:
    def __init__(self, db: Db, models: ModelService, metrics: Metrics,
                 drift: DriftService | None = None,
                 trace_cache_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._db = db
        self._models = models
        self._metrics = metrics
        self._drift = drift  # told of every new hole and every operator confirmation
        self.trace_cache = TraceCache(trace_cache_bytes)  # (hole id, max_points) -> JSON
        self._cache_lock = threading.Lock()
        # latest served estimate per hole: the daemon is the store's only writer, so this
        # stays exact once loaded, and listings need no scan of the predictions table
        self._latest: dict[str, dict[str, Any]] | None = None
        # the review queue's sort key of each estimate above, computed once when it arrives
        # rather than for every hole on every listing
        self._keys: dict[str, ReviewKey] = {}

    # -- bytes in ----------------------------------------------------------------------------

    def ingest(self, data: bytes, source: str | None, group: str | None
               ) -> tuple[Hole, Estimate, bool]:
        """(hole view, estimate, created). Stored as `appliance ingest` stores a file
        (appliance.services.intake): a rejected upload is quarantined, then its error raised.
        The group keeps related holes on one side of a cross-validation split: the client
        knows best (rig, part, batch); else the drilling unit the log came from."""
        name = check_source(source) if source is not None else default_source(data)
        hole_id, created, trace = ingest_upload(self._db.store, data, name, group)
        stored = None if created else self.latest_estimate(hole_id)
        if stored is not None:
            estimate = stored
        else:
            est = self._fresh_estimate(hole_id, trace)
            estimate = est.as_dict()
            if created:
                self.observe([NewHole(hole_id, trace, est, read_trace(trace))])
        return self.get(hole_id), estimate_record(estimate), created

    async def estimate_bytes(self, data: bytes, source: str | None) -> Estimate:
        """Stateless: parse and estimate, store nothing (not even a quarantine entry).

        For the event loop: the bytes are parsed where their batch is answered (an estimate
        worker process, or the daemon's model thread without workers) and the batch is
        awaited, so no request holds a thread meanwhile."""
        name = check_source(source) if source is not None else default_source(data)
        est = await self._models.estimate_async(Upload(data, name))
        self._metrics.count_estimate(est.estimator)
        return estimate_record(est.as_dict())

    def warm(self, holes: int = 32) -> None:
        """Send a burst of synthetic uploads through the estimate path (every model thread and
        its worker process) so the first burst of real requests does not
        pay the first allocations (nor the workers' start and model load): measured, a cold
        daemon answered its first 32 concurrent estimates ~1.5x slower than later ones."""
        from appliance.ingest.setitec_writer import write_setitec
        from appliance.synth import generate

        data = write_setitec(generate(1, 7)[0].trace)
        waiting = [self._models.batcher.submit(Upload(data, "warm-up.xls"))
                   for _ in range(holes)]
        for fut in waiting:
            fut.result(timeout=120)

    # -- reads -------------------------------------------------------------------------------
    def get(self, hole_id: str) -> Hole:
        return self._view(self._db.get_hole(hole_id))

    def list(self, status: HoleFilter, since: str | None, limit: int, offset: int,
             drill: str | None = None) -> tuple[list[Hole], int]:
        """A page of holes. `drill`: only that drill's (its serial; "unknown" without one)."""
        labelled = {"all": None, "labelled": True, "unlabelled": False,
                    "needs-review": False}[status]
        if drill is not None:
            ids = self._db.hole_ids(labelled, since)
            drills = self._db.hole_drills()
            ids = [h for h in ids if drills.get(h) == drill]
            if status == "needs-review":
                ids = self.review_order(ids)
            return self._views_of(ids[offset:offset + limit]), len(ids)
        if status != "needs-review":
            rows = self._db.list_holes(labelled, since, limit, offset)
            total = self._db.count_holes(labelled, since)
            return [self._view(r) for r in rows], total
        ids = self.review_order(self._db.hole_ids(labelled, since))
        page = ids[offset:offset + limit]
        return self._views_of(page), len(ids)

    def review_order(self, ids: builtins.list[str]) -> builtins.list[str]:
        """The hole ids in review order (see review_key); ties keep the given order. Holes of
        a drill in drift alarm come first: what operators confirm there is what a fine-tune
        needs to follow the drill."""
        never = review_key(None)
        alarmed = set(self._drift.alarmed()) if self._drift is not None else set()
        with self._cache_lock:
            self._loaded()
            keys = self._keys
            if not alarmed:
                return sorted(ids, key=lambda h: keys.get(h, never))
            drill = self._drift.drill_of_hole if self._drift is not None else (lambda h: None)
            return sorted(ids, key=lambda h: (drill(h) not in alarmed, keys.get(h, never)))

    def _views_of(self, ids: builtins.list[str]) -> builtins.list[Hole]:
        """The hole views of these ids, in this order: only a page's rows are read and built."""
        if not ids:
            return []
        rows = {r.hole_id: r for r in self._db.list_holes(None, None, ids=ids)}
        return [self._view(rows[h]) for h in ids if h in rows]

    def latest_estimate(self, hole_id: str) -> dict[str, Any] | None:
        with self._cache_lock:
            return self._loaded().get(hole_id)

    def _loaded(self) -> dict[str, dict[str, Any]]:
        """The latest estimates, read from the store on first use (caller holds the lock)."""
        if self._latest is None:
            self._latest = self._db.latest_predictions()
            self._keys = {h: review_key(e) for h, e in self._latest.items()}
        return self._latest

    def _remember(self, hole_id: str, estimate: dict[str, Any]) -> None:
        """A new latest estimate of a hole into the cache (if loaded) with its sort key."""
        with self._cache_lock:
            if self._latest is not None:
                self._latest[hole_id] = estimate
                self._keys[hole_id] = review_key(estimate)

    def cached_trace_json(self, hole_id: str, max_points: int) -> bytes | None:
        """The downsampled trace as JSON when it is in memory (no store access, no encoding:
        answered on the event loop in microseconds)."""
        return self.trace_cache.get((hole_id, max_points))

    def trace_json(self, hole_id: str, max_points: int) -> bytes:
        """The downsampled trace (see _trace_view) encoded as JSON, the API's TraceOut."""
        # a hole's samples never change (content-addressed): an operator paging back and
        # forth through holes is served from memory, already encoded
        hit = self.cached_trace_json(hole_id, max_points)
        if hit is not None:
            return hit
        body = msgspec.json.encode(self._trace_view(hole_id, max_points))
        self.trace_cache.put((hole_id, max_points), body)
        return body

    def _trace_view(self, hole_id: str, max_points: int) -> dict[str, Any]:
        trace = self._db.get_trace(hole_id)
        idx = minmax_indices(max_points, trace.torque_a, trace.thrust_a, trace.step)
        return {
            "hole_id": hole_id,
            "n_samples": len(trace),
            "n_points": len(idx),
            "index": idx.tolist(),
            "depth_mm": _floats(trace.depth_mm[idx]),
            "torque_a": _floats(trace.torque_a[idx]),
            "thrust_a": _floats(trace.thrust_a[idx]),
            "step": trace.step[idx].astype(np.int64).tolist(),
        }

    def estimate(self, hole_id: str, fresh: bool, active_version: str | None) -> Estimate:
        """The stored estimate of the active model, or a fresh one (then stored)."""
        if not fresh:
            stored = self.latest_estimate(hole_id)
            if stored is not None and stored.get("model_version") == active_version:
                return estimate_record(stored)
        return estimate_record(self._fresh(hole_id, self._db.get_trace(hole_id)))

    def estimate_stored(self, items: builtins.list[tuple[str, Trace]]
                        ) -> tuple[builtins.list[dict[str, Any]], builtins.list[NewHole]]:
        """(the estimate of each stored hole, the holes estimated now). A hole's stored
        estimate of the active model is reused, the rest are estimated in one batch and stored
        (a hole arriving twice is estimated once). The drift watch is not told: the caller
        does that with observe(), e.g. after it has answered."""
        active = self._models.active_version()
        out: list[dict[str, Any] | None] = []
        todo: list[tuple[str, Trace]] = []
        for hole_id, trace in items:
            stored = self.latest_estimate(hole_id)
            if stored is not None and stored.get("model_version") == active:
                out.append(stored)
            else:
                out.append(None)
                todo.append((hole_id, trace))
        fresh = iter(self._models.estimate_and_record_many(todo)) if todo else iter(())
        done: list[dict[str, Any]] = []
        new: list[NewHole] = []
        for (hole_id, trace), known in zip(items, out, strict=True):
            if known is None:
                est = next(fresh)
                self._metrics.count_estimate(est.estimator)
                known = est.as_dict()
                self._remember(hole_id, known)
                new.append(NewHole(hole_id, trace, est, read_trace(trace)))
            done.append(known)
        return done, new

    def backfill(self, stop: threading.Event, chunk: int = 16) -> int:
        """Estimate (and store) every hole that has no estimate yet, e.g. holes ingested by
        the CLI while no daemon ran, so the review queue can rank them. Returns the count."""
        done = 0
        missing = [h for h in self._db.hole_ids(None, None)
                   if self.latest_estimate(h) is None]
        for i in range(0, len(missing), chunk):
            if stop.is_set():
                break
            ids = missing[i:i + chunk]
            traces = [self._db.get_trace(h) for h in ids]
            new: list[NewHole] = []
            for hole_id, trace, est in zip(ids, traces, self._models.estimate_many(traces),
                                           strict=True):
                if self.latest_estimate(hole_id) is not None:
                    continue  # a request estimated it meanwhile
                self._db.add_prediction(hole_id, est)
                self._metrics.count_estimate(est.estimator)
                self._remember(hole_id, est.as_dict())
                new.append(NewHole(hole_id, trace, est, read_trace(trace)))
                done += 1
            self.observe(new)
        return done

    # -- labels ------------------------------------------------------------------------------
    def add_label(self, hole_id: str, points: DepthPoints, by: str, actor: str) -> Label:
        estimate = self.latest_estimate(hole_id)
        label_id = add_label(self._db.store, hole_id, points, by, actor, estimate)
        if self._drift is not None:
            try:
                self._drift.observe_label(hole_id,
                                          self._db.get_hole(hole_id).drill_serial,
                                          points, estimate)
            except Exception:  # the label is stored: the watch must not turn that into an error
                log.exception("drift watch: the label of hole %s was not observed", hole_id)
        for label in reversed(self._db.label_history(hole_id)):
            if label.label_id == label_id:
                return label
        raise NotFoundError(f"label {label_id} of hole {hole_id} vanished")  # pragma: no cover

    def labels(self, hole_id: str) -> builtins.list[Label]:
        self._db.get_hole(hole_id)  # 404 for an unknown hole, not an empty history
        return self._db.label_history(hole_id)

    # -- helpers -----------------------------------------------------------------------------
    def observe(self, holes: builtins.list[NewHole]) -> None:
        """New holes to the drift watch; its failure never costs the hole or its estimate."""
        if not holes or self._drift is None:
            return
        try:
            self._drift.observe_holes(holes)
        except Exception:
            log.exception("drift watch: %d new hole(s) not observed", len(holes))

    def _fresh(self, hole_id: str, trace: Trace) -> dict[str, Any]:
        return self._fresh_estimate(hole_id, trace).as_dict()

    def _fresh_estimate(self, hole_id: str, trace: Trace) -> DepthEstimate:
        est = self._models.predict_and_record(hole_id, trace)
        self._metrics.count_estimate(est.estimator)
        self._remember(hole_id, est.as_dict())
        return est

    def _view(self, hole: Hole) -> Hole:
        return with_estimate(hole, self.latest_estimate(hole.hole_id),
                             source=shown_source(hole.source))  # rows stored with a path before


def _confidence(estimate: dict[str, Any] | None) -> float:
    values = [c for c in ((estimate or {}).get("confidence") or {}).values() if c is not None]
    return float(min(values)) if values else 0.0


def _floats(values: np.ndarray) -> list[float | None]:
    # 4 decimals is finer than the logs themselves (0.001 mm, 0.001 A) and halves the body;
    # JSON has no NaN: a missing sample is null
    arr = np.round(np.asarray(values, dtype=np.float64), 4)
    out: list[float | None] = arr.tolist()
    for i in np.flatnonzero(~np.isfinite(arr)):
        out[i] = None
    return out


def points_from(body: dict[str, Any]) -> DepthPoints:
    return DepthPoints(*(body.get(f"{n}_mm") for n in POINT_NAMES))
