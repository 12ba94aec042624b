"""The Store: the one object through which the appliance reads and writes its DuckDB file.

SQL lives in the per-concern modules (holes, labels, predictions, models, jobs, audit);
this class owns the connection, the transactions and the rules that span tables.
One connection per Store, guarded by a lock, so threads of the daemon may share it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Unpack

import duckdb
import msgspec

from appliance.config import MAX_SAMPLES_PER_HOLE
from appliance.errors import DiskFullError, NotFoundError, ValidationError, disk_full
from appliance.points import DepthEstimate, DepthPoints
from appliance.records import (
    Activation,
    AuditEntry,
    GateVerdict,
    Hole,
    Job,
    JobChange,
    JobParams,
    Label,
    ModelVersion,
    Prediction,
)
from appliance.store import audit as audit_sql
from appliance.store import bus, drift, holes, jobs, labels, models, predictions
from appliance.store.codec import utcnow
from appliance.store.connection import StoreOpenError, connect, db_path
from appliance.store.exam import DEFAULT_EXAM_SHARE, is_exam
from appliance.store.models import ModelChange
from appliance.store.schema import migrate
from appliance.trace import Trace


class Store:
    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        path: Path,
        read_only: bool = False,
        exam_share: float = DEFAULT_EXAM_SHARE,
        max_samples: int = MAX_SAMPLES_PER_HOLE,
    ) -> None:
        self._con = con
        self.path = path
        self.read_only = read_only
        self.exam_share = exam_share
        self.max_samples = max_samples  # per hole: a longer trace is refused at ingest
        self._lock = threading.RLock()

    @classmethod
    def open(
        cls, home: Path, read_only: bool = False, exam_share: float = DEFAULT_EXAM_SHARE,
        max_samples: int = MAX_SAMPLES_PER_HOLE,
    ) -> Store:
        """Open <home>/appliance.duckdb (unless read_only: create home and file, migrate)."""
        home = Path(home)
        if home.exists() and not home.is_dir():
            raise StoreOpenError(f"the appliance home {home} is a file, not a folder")
        if not read_only:
            home.mkdir(parents=True, exist_ok=True)
        path = db_path(home)
        con = connect(path, read_only=read_only)
        try:
            migrate(con, str(path), read_only=read_only)
        except BaseException:
            con.close()
            raise
        return cls(con, path, read_only=read_only, exam_share=exam_share,
                   max_samples=max_samples)

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connection helpers (for SQL that belongs to another room, e.g. the registry) --

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The connection, held exclusively for the block (autocommit). A write the disk has
        no room for raises DiskFullError."""
        with self._lock:
            try:
                yield self._con
            except duckdb.Error as exc:
                _raise_disk_full(exc)
                raise

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The connection inside BEGIN ... COMMIT; any exception rolls everything back. A
        commit (or a large insert, which DuckDB writes ahead) the disk has no room for raises
        DiskFullError, and nothing of the block is stored."""
        with self._lock:
            self._con.begin()
            try:
                yield self._con
            except BaseException as exc:
                self._con.rollback()
                if isinstance(exc, duckdb.Error):
                    _raise_disk_full(exc)
                raise
            try:
                self._con.commit()
            except duckdb.Error as exc:  # DuckDB has rolled the transaction back itself
                _raise_disk_full(exc)
                raise

    # -- holes --

    def add_hole(self, trace: Trace, group: str | None = None) -> tuple[str, bool]:
        """Store the hole and all its samples atomically.

        Returns (hole_id, created). Content already stored (same content hash) writes
        no hole or samples; only a new file name for it is remembered.
        """
        self.check_trace(trace)
        with self.transaction() as con:
            return self._put_holes(con, [(trace, group)])[0]

    def check_trace(self, trace: Trace) -> None:
        """Raise ValidationError, naming the source, for a trace the store must refuse."""
        holes.check_trace(trace, self.max_samples)

    def add_holes(
        self, items: list[tuple[Trace, str | None]]
    ) -> list[tuple[str, bool] | ValidationError | DiskFullError]:
        """Store several holes in one transaction: a few statements and one commit for all.

        Each hole is complete or absent, as with add_hole. A hole that breaks a rule
        does not sink the others: its ValidationError takes its place in the result and
        the rest are stored one transaction each. A group the disk has no room for is
        stored in halves, down to one hole, so as much as fits is stored: the first hole
        that does not fit and every one after it get the DiskFullError in their place.
        Any other error stores none of them.
        """
        try:
            for trace, _ in items:
                self.check_trace(trace)
            with self.transaction() as con:
                return list(self._put_holes(con, items))
        except ValidationError:
            out: list[tuple[str, bool] | ValidationError | DiskFullError] = []
            for trace, group in items:
                full = next((r for r in out if isinstance(r, DiskFullError)), None)
                out.append(full or self._try_add_hole(trace, group))
            return out
        except DiskFullError as exc:
            if len(items) == 1:
                return [exc]
            half = len(items) // 2
            first = self.add_holes(items[:half])
            full = next((r for r in first if isinstance(r, DiskFullError)), None)
            if full is not None:
                return first + [full] * (len(items) - half)
            return first + self.add_holes(items[half:])

    def _try_add_hole(self, trace: Trace, group: str | None
                      ) -> tuple[str, bool] | ValidationError | DiskFullError:
        try:
            return self.add_hole(trace, group)
        except (ValidationError, DiskFullError) as exc:
            return exc

    @staticmethod
    def _put_holes(
        con: duckdb.DuckDBPyConnection, items: list[tuple[Trace, str | None]]
    ) -> list[tuple[str, bool]]:
        now = utcnow()
        ids = [holes.hole_id_for(trace.meta.content_hash) for trace, _ in items]
        known = holes.stored_hashes(con, sorted(set(ids)))
        results, fresh, aliases = [], [], []
        for (trace, group), hole_id in zip(items, ids, strict=True):
            content_hash = trace.meta.content_hash
            if known.get(hole_id, content_hash) != content_hash:
                raise ValidationError(
                    f"{trace.meta.source}: hole id {hole_id} is already used by other content"
                )
            if hole_id in known:
                aliases.append((hole_id, trace.meta.source, group))
                results.append((hole_id, False))
            else:
                known[hole_id] = content_hash
                fresh.append((hole_id, trace, group))
                results.append((hole_id, True))
        if fresh:
            seqs = holes.next_seqs(con, len(fresh))
            batch = [holes.NewHole(hole_id, seq, trace, group)
                     for (hole_id, trace, group), seq in zip(fresh, seqs, strict=True)]
            holes.insert_holes(con, batch, now)
            holes.insert_samples(con, batch)
        for hole_id, source, group in aliases:  # after the holes, so a first name is known
            holes.add_alias(con, hole_id, source, group, now)
        return results

    def has_content(self, content_hash: str) -> str | None:
        """The hole id holding this content, if any."""
        with self.cursor() as con:
            return holes.find_by_hash(con, content_hash)

    def get_hole(self, hole_id: str) -> Hole:
        """The hole with its latest label in full (what it was confirmed from, who through
        which door) and whether it is in the exam set."""
        with self.cursor() as con:
            found = holes.list_rows(con, ids=[hole_id])
            if not found:
                raise NotFoundError(f"hole {hole_id} does not exist")
            return msgspec.structs.replace(found[0], label=labels.latest(con, hole_id),
                                           exam=self.is_exam(hole_id))

    def hole_sources(self, hole_id: str) -> list[str]:
        """Every name the hole's content arrived under, the first first."""
        with self.cursor() as con:
            return holes.sources(con, hole_id)

    def get_trace(self, hole_id: str) -> Trace:
        with self.cursor() as con:
            row = holes.get_row(con, hole_id)
            if row is None:
                raise NotFoundError(f"hole {hole_id} does not exist")
            return holes.load_trace(con, row)

    def list_holes(
        self,
        labelled: bool | None = None,
        since: datetime | str | None = None,
        limit: int | None = None,
        offset: int = 0,
        ids: list[str] | None = None,
    ) -> list[Hole]:
        """Holes in ingest order with their latest label (ids: only those holes)."""
        with self.cursor() as con:
            return holes.list_rows(con, labelled, since, limit, offset, ids)

    def hole_ids(self, labelled: bool | None = None, since: datetime | str | None = None
                 ) -> list[str]:
        """The ids list_holes would list, in its order, without building the rows."""
        with self.cursor() as con:
            return holes.list_ids(con, labelled, since)

    def count_holes(self, labelled: bool | None = None, since: datetime | str | None = None) -> int:
        with self.cursor() as con:
            return holes.count_rows(con, labelled, since)

    def hole_drills(self) -> dict[str, str]:
        with self.cursor() as con:
            rows = con.execute("SELECT hole_id, coalesce(drill_serial, 'unknown') "
                               "FROM holes").fetchall()
        return dict(rows)

    def find_holes_by_source(self, name: str) -> list[str]:
        """Every hole id the name could mean (see holes.SourceIndex for the rules)."""
        with self.cursor() as con:
            return holes.SourceIndex(con).lookup(name)

    def find_hole_by_source(self, name: str) -> str | None:
        """The one hole a file name or path refers to; None when unknown.

        Raises ValidationError when the name fits several holes.
        """
        found = self.find_holes_by_source(name)
        if len(found) > 1:
            raise ValidationError(
                f"{name!r} matches {len(found)} holes ({', '.join(found[:5])}); "
                "give the path relative to the ingest folder or the hole id"
            )
        return found[0] if found else None

    def source_index(self) -> holes.SourceIndex:
        """A snapshot of every known file name, for matching many names at once."""
        with self.cursor() as con:
            return holes.SourceIndex(con)

    def is_exam(self, hole_id: str) -> bool:
        return is_exam(hole_id, self.exam_share)

    # -- labels --

    def add_label(
        self,
        hole_id: str,
        points: DepthPoints,
        by: str,
        origin: str = "operator",
        from_estimate: dict[str, Any] | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int:
        """Append a label (it becomes the hole's truth); returns its label id."""
        with self.transaction() as con:
            row = holes.get_row(con, hole_id)
            if row is None:
                raise NotFoundError(f"hole {hole_id} does not exist")
            labels.check_points(points, row["depth_min"], row["depth_max"], hole_id)
            return labels.insert_label(con, hole_id, points, by, origin, from_estimate, detail)

    def latest_label(self, hole_id: str) -> Label | None:
        with self.cursor() as con:
            return labels.latest(con, hole_id)

    def label_history(self, hole_id: str) -> list[Label]:
        with self.cursor() as con:
            return labels.history(con, hole_id)

    def latest_labels(self) -> list[Label]:
        """The latest label of every labelled hole, by hole id."""
        with self.cursor() as con:
            return labels.all_latest(con)

    # -- predictions --

    def add_predictions(self, items: list[tuple[str, DepthEstimate, bool]]) -> None:
        """(hole_id, estimate, shadow) of stored holes, in one transaction."""
        with self.transaction() as con:
            known = holes.stored_hashes(con, sorted({h for h, _, _ in items}))
            missing = sorted({h for h, _, _ in items} - set(known))
            if missing:
                raise NotFoundError(f"hole(s) {', '.join(missing)} do not exist")
            predictions.insert_many(con, items)

    def add_prediction(self, hole_id: str, estimate: DepthEstimate, shadow: bool = False) -> int:
        with self.transaction() as con:
            if holes.get_row(con, hole_id) is None:
                raise NotFoundError(f"hole {hole_id} does not exist")
            return predictions.insert(con, hole_id, estimate, shadow)

    def predictions(self, hole_id: str, shadow: bool | None = None) -> list[Prediction]:
        with self.cursor() as con:
            return predictions.for_hole(con, hole_id, shadow)

    def latest_predictions(self, shadow: bool = False) -> list[Prediction]:
        with self.cursor() as con:
            return predictions.latest_per_hole(con, shadow)

    # -- models and activations --

    def add_model(
        self,
        version: str,
        path: str | Path,
        architecture: str | None = None,
        parent: str | None = None,
        status: str = "candidate",
        gate_report: GateVerdict | None = None,
        metrics: dict[str, Any] | None = None,
        dataset_hash: str | None = None,
        manifest: dict[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> None:
        with self.transaction() as con:
            models.insert(con, version, str(path), architecture, parent, status, gate_report,
                          metrics, dataset_hash, manifest, created_at)

    def get_model(self, version: str) -> ModelVersion:
        with self.cursor() as con:
            row = models.get(con, version)
        if row is None:
            raise NotFoundError(f"model version {version!r} is not registered")
        return row

    def list_models(self, status: str | None = None) -> list[ModelVersion]:
        with self.cursor() as con:
            return models.list_all(con, status)

    def update_model(self, version: str, /, **fields: Unpack[ModelChange]) -> None:
        with self.transaction() as con:
            models.update(con, version, fields)

    def active_version(self) -> str | None:
        with self.cursor() as con:
            return models.active_version(con)

    def record_activation(
        self,
        version: str,
        previous_version: str | None,
        action: str,
        actor: str,
        reason: str | None = None,
    ) -> int:
        """Mark version active (the previous active one retired) and log it, atomically."""
        with self.transaction() as con:
            if models.get(con, version) is None:
                raise NotFoundError(f"model version {version!r} is not registered")
            con.execute(
                "UPDATE models SET status = 'retired' WHERE status = 'active' AND version <> ?",
                [version],
            )
            models.update(con, version, {"status": "active"})
            return models.record_activation(con, version, previous_version, action, actor,
                                            reason)

    def activations(self, limit: int | None = None) -> list[Activation]:
        with self.cursor() as con:
            return models.activations(con, limit)

    # -- jobs --

    def create_job(
        self, kind: str, params: JobParams | None = None, status: str = "queued",
        job_id: str | None = None,
    ) -> str:
        with self.transaction() as con:
            return jobs.insert(con, kind, params, status, job_id)

    def update_job(self, job_id: str, /, **fields: Unpack[JobChange]) -> None:
        with self.transaction() as con:
            jobs.update(con, job_id, fields)

    def get_job(self, job_id: str) -> Job:
        with self.cursor() as con:
            job = jobs.get(con, job_id)
        if job is None:
            raise NotFoundError(f"job {job_id!r} does not exist")
        return job

    def list_jobs(self, status: str | None = None, limit: int | None = None) -> list[Job]:
        with self.cursor() as con:
            return jobs.list_all(con, status, limit)

    # -- audit, quarantine, API keys --

    def audit(
        self, actor: str, action: str, subject: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int:
        with self.cursor() as con:
            return audit_sql.record(con, actor, action, subject, detail)

    def audit_log(self, action: str | None = None,
                  limit: int | None = None) -> list[AuditEntry]:
        with self.cursor() as con:
            return audit_sql.entries(con, action, limit)

    def quarantine(
        self, source: str, error: str, data: bytes | None = None, size: int | None = None
    ) -> int:
        """Record an input that was rejected (hash and size of its bytes when known)."""
        with self.cursor() as con:
            return audit_sql.quarantine(con, source, error, data, size)

    def quarantined(self, limit: int | None = None) -> list[dict[str, Any]]:
        with self.cursor() as con:
            return audit_sql.quarantined(con, limit)

    def add_api_key(self, name: str, key_hash: str, *, role: str) -> None:
        with self.transaction() as con:
            audit_sql.add_api_key(con, name, key_hash, role)

    def api_key(self, key_hash: str) -> tuple[str, str] | None:
        """(name, role) of the key with this hash, None when there is none."""
        with self.cursor() as con:
            return audit_sql.api_key(con, key_hash)

    def api_key_name(self, key_hash: str) -> str | None:
        with self.cursor() as con:
            return audit_sql.api_key_name(con, key_hash)

    def api_keys(self) -> list[dict[str, Any]]:
        with self.cursor() as con:
            return audit_sql.api_keys(con)

    def delete_api_key(self, name: str) -> bool:
        with self.transaction() as con:
            return audit_sql.delete_api_key(con, name)

    # -- the rig's bus (appliance.bus) --

    def bus_seen(self) -> tuple[list[str], list[str]]:
        """(digests of the stored messages, keys of the holes answered or owed), oldest
        first: what the bus mirrors in memory."""
        with self.cursor() as con:
            return bus.seen(con)

    def bus_known(self, digests: list[str]) -> set[str]:
        """Which of these messages are stored already (redeliveries, re-sent copies)."""
        with self.cursor() as con:
            return bus.known_digests(con, digests)

    def bus_waiting(self) -> list[bus.WaitingMessage]:
        with self.cursor() as con:
            return bus.waiting(con)

    def bus_payloads(self, digests: list[str]) -> dict[str, bytes]:
        with self.cursor() as con:
            return bus.payloads(con, digests)

    def bus_commit(self, inbox: list[bus.InboxRow], pairs: list[bus.PairToStore],
                   settled: list[bus.Settlement], published: list[str] | None = None
                   ) -> list[bus.BusHole]:
        """One step of the bus in one transaction: new messages (unreadable ones also to the
        quarantine table), the pairs' holes with their samples and the answers owed, and
        earlier messages settled, and answers now known to be at the broker. A crash before the
        commit leaves all of it unsaid: the broker redelivers what was not acknowledged."""
        if not inbox and not pairs and not settled and not published:
            return []
        with self.transaction() as con:
            bus.mark_published(con, published or [])
            bus.insert_messages(con, inbox)
            for row in inbox:
                if row.state == "quarantined" and row.hole_key is None:
                    audit_sql.quarantine(con, f"mqtt:{row.topic}", row.reason or "unreadable",
                                         row.payload, None)
            storing = [p for p in pairs if p.trace is not None]
            ids = iter(self._put_holes(con, [(p.trace, p.group) for p in storing
                                             if p.trace is not None]))
            out: list[bus.BusHole] = []
            for pair in pairs:
                hole = pair.hole
                if pair.trace is not None:
                    hole = replace(hole, hole_id=next(ids)[0])
                else:
                    audit_sql.quarantine(con, f"mqtt:{hole.hole_key}", hole.error or "unusable",
                                         None, None)
                out.append(hole)
            bus.settle_messages(con, settled)
            bus.insert_holes(con, out)
        return out

    def bus_store_pairs(self, pairs: list[bus.PairToStore]) -> list[bus.BusHole]:
        """Holes of messages stored earlier, with their messages settled."""
        settled = [bus.Settlement(d, "paired" if p.trace is not None else "quarantined",
                                  p.hole.hole_key, p.hole.error)
                   for p in pairs for d in p.digests]
        return self.bus_commit([], pairs, settled)

    def bus_holes(self, keys: list[str]) -> dict[str, bus.BusHole]:
        with self.cursor() as con:
            return bus.find_holes(con, keys)

    def bus_holes_for(self, toolbox: str, tool: str, result_id: str) -> list[bus.BusHole]:
        with self.cursor() as con:
            return bus.holes_for(con, toolbox, tool, result_id)

    def bus_attach_heads(self, digest: str, hole_key: str, head_id: str | None) -> None:
        """A heads message that came after its hole was answered: recorded, not republished."""
        with self.transaction() as con:
            bus.set_head(con, hole_key, head_id)
            bus.settle_messages(con, [bus.Settlement(digest, "paired", hole_key, "late heads")])

    def bus_unpublished(self) -> list[bus.BusHole]:
        with self.cursor() as con:
            return bus.unpublished(con)

    def bus_unpublished_of(self, keys: list[str]) -> list[bus.BusHole]:
        wanted = set(keys)
        with self.cursor() as con:
            return [h for h in bus.unpublished(con) if h.hole_key in wanted]

    def bus_mark_published(self, keys: list[str]) -> None:
        with self.transaction() as con:
            bus.mark_published(con, keys)

    def bus_expire(self, before: datetime, reason: str) -> list[bus.WaitingMessage]:
        with self.transaction() as con:
            found = bus.expire(con, before, reason)
            for m in found:
                audit_sql.quarantine(con, f"mqtt:{m.topic}", reason, None, None)
            return found

    def bus_prune(self, before: datetime) -> int:
        with self.transaction() as con:
            return bus.prune(con, before)

    def bus_counts(self) -> bus.BusCounts:
        with self.cursor() as con:
            return bus.counts(con)

    # -- the drift monitor's events (appliance.monitor) --

    def add_drift_events(self, events: list[drift.DriftEvent]) -> None:
        if events:
            with self.transaction() as con:
                drift.append(con, events)

    def drift_events(self) -> list[drift.DriftEvent]:
        with self.cursor() as con:
            return drift.all_events(con)

    def confirmed_labels(self) -> list[Label]:
        """Operators' latest labels that kept the estimate they were shown, oldest first."""
        with self.cursor() as con:
            return labels.confirmed(con)


def _raise_disk_full(exc: duckdb.Error) -> None:
    """DuckDB's error as a DiskFullError when the disk ran full; else nothing (the caller
    re-raises it as it is)."""
    full = disk_full(exc)
    if full is not None:
        raise full from exc
