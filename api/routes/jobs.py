"""Training jobs: fine-tune by hand or the nightly routine now; follow, cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from api.auth import actor_of, needs
from api.routes._docs import DaemonDep, errors
from api.schemas import FineTuneIn, JobOut, NightlyIn, NightlyOut, to_struct
from appliance.jobs.runner import TERMINAL

JobId = Annotated[str, Parameter(description="job id", max_length=64)]
POLL_S = 0.5


def job_out(job: dict[str, Any]) -> JobOut:
    return to_struct(JobOut, {**job, "id": job["job_id"], "progress": job.get("progress") or {},
                              "params": job.get("params") or {},
                              "log_tail": job.get("log_tail") or []})


class JobController(Controller):
    path = "/jobs"
    tags = ["jobs"]

    @post("/fine-tune", operation_id="startFineTune", status_code=202, sync_to_thread=True,
          summary="Fine-tune the active model on the confirmed labels (one job at a time)",
          responses=errors(401, 403, 409, 422),
          opt=needs("operator"))
    def fine_tune(self, request: Request, daemon: DaemonDep, data: JSONBody[FineTuneIn]) -> JobOut:
        params = msgspec.structs.asdict(data)
        return job_out(daemon.start_fine_tune(params, actor_of(request)))

    @post("/nightly", operation_id="runNightly", status_code=200, sync_to_thread=True,
          summary="Run the nightly routine now: fine-tune if enough new labels, gate, promote",
          responses=errors(401, 403, 409),
          opt=needs("operator"))
    def nightly(self, request: Request, daemon: DaemonDep, data: JSONBody[NightlyIn]) -> NightlyOut:
        outcome = daemon.nightly(actor_of(request), force=data.force)
        job = outcome.pop("job", None)
        return to_struct(NightlyOut, {**outcome, "job": job_out(job) if job else None})

    @get("/", operation_id="listJobs", sync_to_thread=True, summary="Recent jobs, newest first",
         responses=errors(401))
    def list_jobs(self, daemon: DaemonDep,
                  limit: Annotated[int, Parameter(ge=1, le=1000)] = 50) -> list[JobOut]:
        return [job_out(j) for j in daemon.jobs.list(limit=limit)]

    @get("/{job_id:str}", operation_id="getJob", sync_to_thread=True,
         summary="A job: status, progress, ETA, log tail", responses=errors(401, 404))
    def get_job(self, daemon: DaemonDep, job_id: JobId) -> JobOut:
        return job_out(daemon.job(job_id))

    @delete("/{job_id:str}", operation_id="cancelJob", status_code=200, sync_to_thread=True,
            summary="Cancel a running job (its child process is stopped)",
            responses=errors(401, 403, 404, 409),
          opt=needs("operator"))
    def cancel_job(self, request: Request, daemon: DaemonDep, job_id: JobId) -> JobOut:
        return job_out(daemon.cancel_job(job_id, actor_of(request)))

    @get("/{job_id:str}/events", operation_id="streamJobEvents",
         summary="Server-sent events: `job` with the job at each change, then `end`",
         responses={200: ResponseSpec(
             JobOut, media_type="text/event-stream",
             description="an event stream; each event's data is a JobOut as JSON"),
             **errors(401, 404)})
    async def events(self, daemon: DaemonDep, job_id: JobId) -> ServerSentEvent:
        first = await asyncio.to_thread(daemon.job, job_id)  # 404 before the stream starts
        return ServerSentEvent(_follow(daemon, job_id, first))


async def _follow(daemon: DaemonDep, job_id: str, job: dict[str, Any]
                  ) -> AsyncIterator[ServerSentEventMessage]:
    seen = daemon.jobs.version(job_id)
    while True:
        data = msgspec.json.encode(job_out(job)).decode()
        if job["status"] in TERMINAL:
            yield ServerSentEventMessage(data=data, event="end")
            return
        yield ServerSentEventMessage(data=data, event="job")
        # wait in a worker thread (the event loop stays free), in short slices so a client
        # that went away frees its thread soon
        while (now := await asyncio.to_thread(daemon.jobs.wait_change, job_id, seen,
                                              POLL_S)) == seen:
            pass
        seen = now
        job = await asyncio.to_thread(daemon.job, job_id)
