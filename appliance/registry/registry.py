"""Model versions: folders under `<home>/models/<version>/` plus rows in the store's models table.

Register = copy into a temp folder, check hashes, seal read-only, rename into place, then
write the row. A crash at any step leaves either an orphan temp folder (removed on open), or
a complete folder without its row (recovered on open: the row is written again after the
hashes are re-checked), or both (done). A row whose folder has gone is marked rejected.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from appliance.engine.manifest import ModelFolderError, read_manifest, verify_files
from appliance.errors import NotFoundError, ValidationError
from appliance.gates.integrity import check_integrity
from appliance.gates.report import GateReport
from appliance.records import Activation, GateVerdict, ModelStatus, ModelVersion, SetAside
from appliance.registry import faults, folders
from appliance.store import Store
from appliance.store.codec import iso, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recovery:
    removed_temp: tuple[str, ...] = ()
    recovered_rows: tuple[str, ...] = ()
    removed_folders: tuple[str, ...] = ()
    missing_folders: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.removed_temp or self.recovered_rows or self.removed_folders
                    or self.missing_folders)


class Registry:
    def __init__(self, store: Store, home: Path) -> None:
        self.store = store
        self.home = Path(home)
        self.root = folders.models_dir(self.home)

    def folder(self, version: str) -> Path:
        return self.root / version

    # -- reads --

    def get(self, version: str) -> ModelVersion:
        return self.store.get_model(version)

    def versions(self) -> list[ModelVersion]:
        return self.store.list_models()

    def active_version(self) -> str | None:
        return self.store.active_version()

    def history(self, limit: int | None = None) -> list[Activation]:
        return self.store.activations(limit)

    def ever_active(self, version: str) -> bool:
        return any(a.version == version for a in self.store.activations())

    # -- register --

    def register(self, source: str | Path, actor: str = "operator") -> ModelVersion:
        """Copy a candidate folder in and record it; its integrity gate is run at once.

        A folder that fails integrity is still registered (status rejected, with the report)
        so the operator can see why; one whose manifest cannot be read is refused.
        Registering the same content twice returns the existing version.
        """
        source = Path(source)
        manifest = read_manifest(source)
        version = manifest.version
        existing = self._existing(version)
        if existing is not None:
            if _same_files(manifest.files, (existing.manifest or {}).get("files")):
                return existing
            raise ValidationError(
                f"{source}: version {version!r} is already registered with different files; "
                "a new model needs a new version name"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.folder(version)
        if final.exists():
            # A folder without a row that recovery did not adopt: it cannot be trusted.
            folders.remove_tree(final)
        tmp = folders.temp_dir_for(self.root, version)
        try:
            folders.copy_in(source, tmp)
            faults.checkpoint("register:copied")
            folders.seal(tmp)
            faults.checkpoint("register:sealed")
            folders.publish(tmp, final)
        except Exception:
            folders.remove_tree(tmp)
            raise
        faults.checkpoint("register:renamed")
        integrity, _, _ = check_integrity(final)
        report = GateReport(version, (integrity,))
        status: ModelStatus = "candidate" if integrity.ok else "rejected"
        self._add_row(final, status, report.as_verdict())
        faults.checkpoint("register:recorded")
        self.store.audit(actor, "model-register", version,
                         {"source": str(source), "status": status,
                          "integrity": integrity.summary})
        return self.get(version)

    def _existing(self, version: str) -> ModelVersion | None:
        try:
            return self.get(version)
        except NotFoundError:
            return None

    def _add_row(self, final: Path, status: ModelStatus, gate_report: GateVerdict | None
                 ) -> None:
        manifest = read_manifest(final)
        self.store.add_model(
            manifest.version,
            final,
            architecture=manifest.architecture,
            parent=manifest.parent,
            status=status,
            gate_report=gate_report,
            metrics=manifest.metrics,
            dataset_hash=manifest.dataset_hash,
            manifest=manifest.raw,
        )

    def save_report(self, report: GateReport) -> ModelVersion:
        """Store a gate report; a hard failure rejects a candidate (never the active model)."""
        status = self.get(report.version).status
        if status == "candidate" and report.rejected:
            status = "rejected"
        elif status == "rejected" and not report.rejected:
            status = "candidate"
        self.store.update_model(report.version, status=status, gate_report=report.as_verdict())
        return self.get(report.version)

    # -- setting aside --

    def reject(self, version: str, why: str, actor: str, remove: bool = False
               ) -> ModelVersion:
        """Set a version aside: status rejected, the reason in its gate report; with
        `remove` its folder is deleted too (the row stays: history names it). Never the
        active version or one that was ever active: rollback goes back to those."""
        row = self.get(version)
        if row.status == "active" or self.ever_active(version):
            raise ValidationError(f"model {version} is or was active: it is kept")
        note = SetAside(why=why, at=iso(utcnow()), by=actor)
        report = msgspec.structs.replace(row.gate_report or GateVerdict(),
                                         **{"removed" if remove else "rejected": note})
        if remove:
            folders.remove_tree(self.folder(version))
        self.store.update_model(version, status="rejected", gate_report=report)
        self.store.audit(actor, "model-remove" if remove else "model-reject", version,
                         {"why": why})
        return self.get(version)

    # -- recovery --

    def recover(self) -> Recovery:
        """Make disk and store agree after a crash; safe to run on every open."""
        removed_temp, recovered, removed, missing = [], [], [], []
        rows = {r.version: r for r in self.versions()}
        if self.root.is_dir():
            for path in sorted(self.root.iterdir()):
                if path.name.startswith(folders.TMP_PREFIX):
                    folders.remove_tree(path)
                    removed_temp.append(path.name)
                elif path.is_dir() and path.name not in rows:
                    if self._adoptable(path):
                        self._add_row(path, "candidate", None)
                        recovered.append(path.name)
                    else:
                        folders.remove_tree(path)
                        removed.append(path.name)
        for version, row in rows.items():
            if not Path(row.path).is_dir() and row.status != "rejected":
                report = msgspec.structs.replace(
                    row.gate_report or GateVerdict(),
                    recovery=f"model folder {row.path} is missing")
                self.store.update_model(version, status="rejected", gate_report=report)
                missing.append(version)
        result = Recovery(tuple(removed_temp), tuple(recovered), tuple(removed), tuple(missing))
        if result.changed:
            log.warning("model registry recovered: %s", result)
            self.store.audit("system", "model-registry-recovery", None, result.__dict__)
        return result

    def _adoptable(self, path: Path) -> bool:
        """A folder published before its row was written: complete, sealed, named right."""
        try:
            manifest = read_manifest(path)
        except ModelFolderError:
            return False
        return manifest.version == path.name and not verify_files(manifest)


def _same_files(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    return bool(a) and a == b
