"""The TUI's only way to the daemon: an async HTTP client of the REST API (issue 6).

Every failure becomes an ApiError whose message an operator can read (what was asked,
what the daemon said); a refused connection becomes DaemonUnreachable so that the app
can offer to start a daemon and keep retrying.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from appliance.points import DepthPoints
from appliance.records import (
    Activation,
    AuditEntry,
    DrillDrift,
    Estimate,
    Health,
    HealthDetails,
    Hole,
    HolePage,
    Job,
    Label,
    LiveAccuracy,
    ModelDetail,
    ModelSummary,
    Trial,
)

DEFAULT_URL = "http://127.0.0.1:8470"
# Idempotent reads are retried this many times on a dropped connection before giving up.
READ_RETRIES = 2


class ApiError(Exception):
    """A request the daemon refused or could not answer, as one readable line."""

    def __init__(self, message: str, status: int | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.detail = detail


class DaemonUnreachable(ApiError):
    """Nothing answers at the daemon's URL (not started, wrong port, or connection lost)."""


def describe_error(response: httpx.Response) -> str:
    """The daemon's own explanation of a refusal, without any stack trace."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip().splitlines()
        return text[0][:200] if text else response.reason_phrase
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("message") or body.get("error")
        extra = body.get("extra")
        parts = [str(detail)] if detail else []
        if isinstance(extra, dict):
            # A refused activation names the failing gate(s) in extra; show them.
            for key in ("failed_gates", "failing_gate", "gate", "reason", "errors"):
                if extra.get(key):
                    parts.append(f"{key.replace('_', ' ')}: {_short(extra[key])}")
        elif isinstance(extra, list) and extra:
            parts.append("; ".join(_short(e) for e in extra[:3]))
        if parts:
            return " — ".join(parts)
    return _short(body)


def _short(value: Any) -> str:
    if isinstance(value, dict):
        if "message" in value:
            key = value.get("key") or value.get("field")
            return f"{key}: {value['message']}" if key else str(value["message"])
        return ", ".join(f"{k}={_short(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_short(v) for v in value)
    return str(value)


# --- the records the daemon serves as the domain declares them (appliance.records) ----------
# A job, a hole, a label or an audit entry is decoded into the very type the API encoded it
# from: a field the daemon renamed or dropped fails here, naming it, not as "-" on a screen.

_Record = TypeVar("_Record")


def decoded(body: Any, kind: type[_Record], where: str) -> _Record:
    """`body` (JSON already parsed) as `kind`; an ApiError naming the route when it is not."""
    try:
        return msgspec.convert(body, kind)
    except msgspec.ValidationError as exc:
        raise ApiError(f"{where}: unexpected answer ({exc})") from exc


class DriftPage(msgspec.Struct, frozen=True):
    """GET /drift (api.schemas.DriftOut): every drill's state."""

    drills: list[DrillDrift]


class _ActiveLive(msgspec.Struct, frozen=True):
    """The live accuracy of a GET /models/active body (api.schemas.ActiveModelOut), read
    apart from its ModelSummary fields so that a failure names `$.live_accuracy...`."""

    live_accuracy: LiveAccuracy | None = None


@dataclass(frozen=True)
class ActiveModel:
    """GET /models/active: the serving version and how it has done since it was activated
    (live None: no confirmed hole yet); served False from a daemon older than issue 14, whose
    answer has no live_accuracy at all."""

    model: ModelSummary
    live: LiveAccuracy | None
    served: bool


def best_trial(trials: list[Trial], number: int | None = None) -> Trial | None:
    """The search's best trial: the one the daemon names (a finished search's best_trial),
    else the complete trial of the lowest objective so far, as the search itself ranks them."""
    if number is not None:
        named = [t for t in trials if t.number == number]
        if named:
            return named[0]
    scored = [t for t in trials if t.state == "complete" and t.objective is not None]
    return min(scored, key=lambda t: (t.objective, t.number)) if scored else None


class DaemonClient:
    """Async client of the daemon. One instance per app; cheap to keep open."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        key: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"Accept": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        expect_json: bool = True,
    ) -> Any:
        params = {k: v for k, v in (params or {}).items() if v is not None}
        attempts = READ_RETRIES + 1 if method == "GET" else 1
        for attempt in range(attempts):
            try:
                response = await self._http.request(method, path, params=params, json=json_body)
                break
            except httpx.TimeoutException as exc:
                raise DaemonUnreachable(
                    f"{method} {path}: the daemon at {self.url} did not answer in time"
                ) from exc
            except httpx.TransportError as exc:
                if attempt + 1 < attempts:
                    await asyncio.sleep(0.2 * (attempt + 1))
                    continue
                raise DaemonUnreachable(
                    f"no daemon answers at {self.url} ({type(exc).__name__})"
                ) from exc
        if response.status_code == 401:
            raise ApiError(
                f"{method} {path}: the daemon wants a valid API key (start the TUI with --key)",
                status=401,
            )
        if response.status_code >= 400:
            raise ApiError(
                f"{method} {path}: {describe_error(response)} (HTTP {response.status_code})",
                status=response.status_code,
                detail=_json_or_none(response),
            )
        if not expect_json:
            return response.text
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(
                f"{method} {path}: the daemon answered something that is not JSON"
            ) from exc

    # --- health and holes ------------------------------------------------------------------

    async def health(self) -> Health:
        """Open (no key): status, version, active model."""
        return decoded(await self._request("GET", "/health"), Health, "GET /health")

    async def health_details(self) -> HealthDetails:
        """With the key: store counts, running job, disk space as well."""
        path = "/health/details"
        return decoded(await self._request("GET", path), HealthDetails, f"GET {path}")

    async def list_holes(
        self,
        status: str = "needs-review",
        since: str | None = None,
        limit: int = 200,
        offset: int = 0,
        drill: str | None = None,
    ) -> list[Hole]:
        """status: "needs-review" (unlabelled, highest review priority first), "unlabelled",
        "labelled" or "all"; since: ISO 8601 time of ingestion; drill: only that drill's
        holes (its serial, "unknown" for holes without one)."""
        params: dict[str, Any] = {"status": status, "limit": limit, "offset": offset,
                                  "since": since, "drill": drill}
        body = await self._request("GET", "/holes", params=params)
        return decoded(body, HolePage, "GET /holes").items

    async def count_holes(self, status: str = "all") -> int:
        body = await self._request("GET", "/holes", params={"status": status, "limit": 1})
        return decoded(body, HolePage, "GET /holes").total

    async def get_hole(self, hole_id: str) -> Hole:
        path = f"/holes/{hole_id}"
        return decoded(await self._request("GET", path), Hole, f"GET {path}")

    async def get_trace(self, hole_id: str, max_points: int = 2000) -> dict[str, Any]:
        """The samples to plot (api.schemas.TraceOut), read by tui.markers.trace_from_json."""
        path = f"/holes/{hole_id}/trace"
        body = await self._request("GET", path, params={"max_points": max_points})
        return decoded(body, dict[str, Any], f"GET {path}")

    async def get_estimate(self, hole_id: str) -> Estimate:
        path = f"/holes/{hole_id}/estimate"
        return decoded(await self._request("GET", path), Estimate, f"GET {path}")

    async def put_label(self, hole_id: str, points: DepthPoints, by: str) -> Label:
        body = {**points.as_dict(), "by": by}
        path = f"/holes/{hole_id}/label"
        return decoded(await self._request("PUT", path, json_body=body), Label, f"PUT {path}")

    async def get_labels(self, hole_id: str) -> list[Label]:
        """A hole's labels, oldest first: the last is its truth."""
        path = f"/holes/{hole_id}/labels"
        return decoded(await self._request("GET", path), list[Label], f"GET {path}")

    async def post_hole(self, data: bytes, source: str) -> dict[str, Any]:
        try:
            response = await self._http.post(
                "/holes",
                params={"source": source},
                content=data,
                headers={"Content-Type": "application/octet-stream"},
            )
        except httpx.TransportError as exc:
            raise DaemonUnreachable(f"no daemon answers at {self.url}") from exc
        if response.status_code >= 400:
            raise ApiError(
                f"POST /holes: {describe_error(response)} (HTTP {response.status_code})",
                status=response.status_code,
            )
        return decoded(_json_or_none(response), dict[str, Any], "POST /holes")

    # --- jobs --------------------------------------------------------------------------------

    async def start_fine_tune(
        self, folds: int, epochs: int, head_only: bool, architecture: str | None = None
    ) -> Job:
        body: dict[str, Any] = {"folds": folds, "epochs": epochs, "head_only": head_only}
        if architecture:
            body["architecture"] = architecture
        path = "/jobs/fine-tune"
        return decoded(await self._request("POST", path, json_body=body), Job, f"POST {path}")

    async def start_tune(self, trials: int, folds: int, epochs: int) -> Job:
        """A hyperparameter search from the active model (a job of kind "tune")."""
        body = {"trials": trials, "folds": folds, "epochs": epochs}
        path = "/jobs/tune"
        return decoded(await self._request("POST", path, json_body=body), Job, f"POST {path}")

    async def list_trials(self, job_id: Any) -> list[Trial]:
        """A search's trials so far, in order (none before the first one ends)."""
        path = f"/jobs/{job_id}/trials"
        return decoded(await self._request("GET", path), list[Trial], f"GET {path}")

    async def list_jobs(self) -> list[Job]:
        """Recent jobs, newest first."""
        return decoded(await self._request("GET", "/jobs"), list[Job], "GET /jobs")

    async def get_job(self, job_id: str) -> Job:
        path = f"/jobs/{job_id}"
        return decoded(await self._request("GET", path), Job, f"GET {path}")

    async def cancel_job(self, job_id: str) -> Job:
        path = f"/jobs/{job_id}"
        return decoded(await self._request("DELETE", path), Job, f"DELETE {path}")

    async def job_events(self, job_id: str) -> AsyncIterator[Job]:
        """The job at each of its changes, from its server-sent events, until its `end`."""
        path = f"/jobs/{job_id}/events"
        try:
            async with self._http.stream(
                "GET",
                path,
                headers={"Accept": "text/event-stream"},
                timeout=httpx.Timeout(10.0, read=None),
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise ApiError(
                        f"GET {path}: {describe_error(response)} "
                        f"(HTTP {response.status_code})",
                        status=response.status_code,
                    )
                async for name, data in parse_sse(response.aiter_lines()):
                    try:
                        yield msgspec.json.decode(data, type=Job)
                    except msgspec.DecodeError as exc:
                        raise ApiError(f"GET {path}: unexpected {name or 'message'} event "
                                       f"({exc})") from exc
                    if name == "end":
                        return
        except httpx.TransportError as exc:
            raise DaemonUnreachable(f"lost the event stream of job {job_id}") from exc

    # --- models ------------------------------------------------------------------------------

    async def list_models(self) -> list[ModelSummary]:
        return decoded(await self._request("GET", "/models"), list[ModelSummary], "GET /models")

    async def get_model(self, version: str) -> ModelDetail:
        path = f"/models/{quote(version, safe='')}"
        return decoded(await self._request("GET", path), ModelDetail, f"GET {path}")

    async def active_model(self) -> ActiveModel | None:
        """The serving version; None when only the rule-based estimator answers."""
        path = "/models/active"
        try:
            body = await self._request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return ActiveModel(model=decoded(body, ModelSummary, f"GET {path}"),
                           live=decoded(body, _ActiveLive, f"GET {path}").live_accuracy,
                           served=isinstance(body, dict) and "live_accuracy" in body)

    async def activate(self, version: str, force: bool = False, reason: str | None = None
                       ) -> ModelSummary:
        body: dict[str, Any] = {"force": force}
        if reason:
            body["reason"] = reason
        path = f"/models/{quote(version, safe='')}/activate"
        return decoded(await self._request("POST", path, json_body=body), ModelSummary,
                       f"POST {path}")

    async def rollback(self, reason: str | None = None, version: str | None = None
                       ) -> ModelSummary:
        body = {k: v for k, v in (("reason", reason), ("version", version)) if v}
        path = "/models/rollback"
        return decoded(await self._request("POST", path, json_body=body), ModelSummary,
                       f"POST {path}")

    async def activations(self, limit: int = 100) -> list[Activation]:
        """Activation and rollback history, newest first."""
        path = "/models/activations"
        return decoded(await self._request("GET", path, params={"limit": limit}),
                       list[Activation], f"GET {path}")

    async def audit(self, limit: int = 50) -> list[AuditEntry]:
        """Who did what, newest first."""
        body = await self._request("GET", "/audit", params={"limit": limit})
        return decoded(body, list[AuditEntry], "GET /audit")

    # --- drift -------------------------------------------------------------------------------

    async def drift(self) -> list[DrillDrift] | None:
        """Every drill's drift watch; None from a daemon that has none (before issue 14)."""
        try:
            body = await self._request("GET", "/drift")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return decoded(body, DriftPage, "GET /drift").drills

    async def reset_drift(self, drill: str) -> DrillDrift:
        """Acknowledge a drill's state: its reference is learnt again from its next holes."""
        # a serial is free text: quoted whole, so a '/' in it cannot change the route
        path = f"/drift/{quote(drill, safe='')}/reset"
        return decoded(await self._request("POST", path), DrillDrift, f"POST {path}")


async def parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str | None, str]]:
    """Server-sent events -> (event name or None, data with its lines joined)."""
    name: str | None = None
    data: list[str] = []
    async for raw in lines:
        line = raw.rstrip("\r")
        if line == "":
            if data:
                yield name, "\n".join(data)
            name, data = None, []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    if data:
        yield name, "\n".join(data)


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
