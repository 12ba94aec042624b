"""Structured gate results, stored as JSON with the model version."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from appliance.records import GateOutcome, GateVerdict

PASS = "pass"
FAIL = "fail"
INSUFFICIENT = "insufficient evidence"
SKIPPED = "skipped"


@dataclass(frozen=True)
class GateResult:
    gate: str  # integrity | parity | accuracy | latency
    status: str  # PASS | FAIL | INSUFFICIENT | SKIPPED
    summary: str  # one line an operator reads first
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        # SKIPPED never blocks on its own: it is only used when there is nothing to compare
        # with (no active model) or after integrity failed, which blocks by itself.
        return self.status in (PASS, SKIPPED)

    def as_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, "status": self.status, "summary": self.summary,
                "details": self.details}

    def as_outcome(self) -> GateOutcome:
        return GateOutcome(gate=self.gate, status=self.status, summary=self.summary,
                           details=self.details)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GateResult:
        return cls(d["gate"], d["status"], d.get("summary", ""), d.get("details") or {})


@dataclass(frozen=True)
class GateReport:
    version: str
    results: tuple[GateResult, ...]
    compared_with: str | None = None  # the active version the candidate was measured against
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.ok for r in self.results)

    @property
    def blocking(self) -> list[GateResult]:
        """The gates that stop promotion (failed, or without enough evidence to decide)."""
        return [r for r in self.results if r.status in (FAIL, INSUFFICIENT)]

    @property
    def rejected(self) -> bool:
        """A hard failure: the candidate is broken or worse (not merely unproven)."""
        return any(r.status == FAIL for r in self.results)

    def result(self, gate: str) -> GateResult | None:
        return next((r for r in self.results if r.gate == gate), None)

    def describe_blocking(self) -> str:
        return "; ".join(f"{r.gate} gate {r.status}: {r.summary}" for r in self.blocking)

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "passed": self.passed,
            "compared_with": self.compared_with,
            "at": self.at,
            "gates": [r.as_dict() for r in self.results],
        }

    def as_verdict(self) -> GateVerdict:
        """The report as the registry stores it with the version."""
        return GateVerdict(version=self.version, passed=self.passed,
                           compared_with=self.compared_with, at=self.at,
                           gates=tuple(r.as_outcome() for r in self.results))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GateReport:
        return cls(
            version=d["version"],
            results=tuple(GateResult.from_dict(g) for g in d.get("gates", [])),
            compared_with=d.get("compared_with"),
            at=d.get("at", ""),
        )
