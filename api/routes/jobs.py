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
from api.schemas import FineTuneIn, NightlyIn, NightlyOut, TuneIn
from appliance.jobs.shown import shown_job
from appliance.records import Job, JobParams, Trial

JobId = Annotated[str, Parameter(description="job id", max_length=64)]


class JobController(Controller):
    path = "/jobs"
    tags = ["jobs"]

    @post("/fine-tune", operation_id="startFineTune", status_code=202, sync_to_thread=True,
          summary="Fine-tune the active model on the confirmed labels (one job at a time)",
          responses=errors(401, 403, 409, 422, 507),
          opt=needs("operator"))
    def fine_tune(self, request: Request[Any, Any, Any], daemon: DaemonDep,
                  data: JSONBody[FineTuneIn]) -> Job:
        params = JobParams(folds=data.folds, epochs=data.epochs, head_only=data.head_only,
                           architecture=data.architecture, seed=data.seed)
        return shown_job(daemon.start_fine_tune(params, actor_of(request)),
                       daemon.config.home)

    @post("/tune", operation_id="startTune", status_code=202, sync_to_thread=True,
          summary="Search hyperparameters on the confirmed labels, fine-tuning from the "
                  "active model (one job at a time); its trials at /jobs/{id}/trials",
          responses=errors(401, 403, 409, 422),
          opt=needs("operator"))
    def tune(self, request: Request[Any, Any, Any], daemon: DaemonDep,
             data: JSONBody[TuneIn]) -> Job:
        params = JobParams(trials=data.trials, folds=data.folds, epochs=data.epochs)
        return shown_job(daemon.start_search(params, actor_of(request)), daemon.config.home)

    @post("/nightly", operation_id="runNightly", status_code=200, sync_to_thread=True,
          summary="Run the nightly routine now: fine-tune if enough new labels, gate, promote",
          responses=errors(401, 403, 409),
          opt=needs("operator"))
    def nightly(self, request: Request[Any, Any, Any], daemon: DaemonDep,
                data: JSONBody[NightlyIn]) -> NightlyOut:
        outcome = daemon.nightly(actor_of(request), force=data.force)
        job: Job | None = outcome["job"]
        return NightlyOut(started=outcome["started"], reason=outcome["reason"],
                          new_labels=outcome["new_labels"],
                          min_new_labels=outcome["min_new_labels"],
                          job=shown_job(job, daemon.config.home) if job else None)

    @get("/", operation_id="listJobs", sync_to_thread=True, summary="Recent jobs, newest first",
         responses=errors(401))
    def list_jobs(self, daemon: DaemonDep,
                  limit: Annotated[int, Parameter(ge=1, le=1000)] = 50) -> list[Job]:
        return [shown_job(j, daemon.config.home) for j in daemon.jobs.list(limit=limit)]

    @get("/{job_id:str}", operation_id="getJob", sync_to_thread=True,
         summary="A job: status, progress, ETA, log tail", responses=errors(401, 404))
    def get_job(self, daemon: DaemonDep, job_id: JobId) -> Job:
        return shown_job(daemon.job(job_id), daemon.config.home)

    @get("/{job_id:str}/trials", operation_id="listTrials", sync_to_thread=True,
         summary="A search's trials so far, in order (empty before the first ends)",
         responses=errors(401, 404, 422))
    def trials(self, daemon: DaemonDep, job_id: JobId) -> list[Trial]:
        return daemon.search_trials(job_id)

    @delete("/{job_id:str}", operation_id="cancelJob", status_code=200, sync_to_thread=True,
            summary="Cancel a running job (its child process is stopped)",
            responses=errors(401, 403, 404, 409),
          opt=needs("operator"))
    def cancel_job(self, request: Request[Any, Any, Any], daemon: DaemonDep,
                   job_id: JobId) -> Job:
        return shown_job(daemon.cancel_job(job_id, actor_of(request)), daemon.config.home)

    @get("/{job_id:str}/events", operation_id="streamJobEvents",
         summary="Server-sent events: `job` with the job at each change, then `end`",
         responses={200: ResponseSpec(
             Job, media_type="text/event-stream",
             description="an event stream; each event's data is a Job as JSON"),
             **errors(401, 404)})
    async def events(self, daemon: DaemonDep, job_id: JobId) -> ServerSentEvent:
        seen = daemon.jobs.version(job_id)  # before the read: no change falls in between
        first = await _job(daemon, job_id)  # 404 before the stream starts
        return ServerSentEvent(_follow(daemon, job_id, first, seen))


async def _job(daemon: DaemonDep, job_id: str) -> Job:
    """The job from the runner's memory; only another job's (or a missing one) from the store,
    in a worker thread."""
    live = daemon.jobs.live(job_id)
    return live if live is not None else await asyncio.to_thread(daemon.job, job_id)


async def _follow(daemon: DaemonDep, job_id: str, job: Job, seen: int
                  ) -> AsyncIterator[ServerSentEventMessage]:
    # a stream waits on the event loop for the runner's news: it holds no worker thread
    # (six streams holding the request threads in turn added ~200 ms to every other request)
    while True:
        data = msgspec.json.encode(shown_job(job, daemon.config.home)).decode()
        if job.ended:
            yield ServerSentEventMessage(data=data, event="end")
            return
        yield ServerSentEventMessage(data=data, event="job")
        seen = await daemon.jobs.next_change(job_id, seen)
        job = await _job(daemon, job_id)
