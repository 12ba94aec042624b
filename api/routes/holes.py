"""Holes: upload, list, read, plot, estimate, label."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, MediaType, Request, Response, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, Parameter

from api.auth import actor_of, needs
from api.routes._docs import DaemonDep, UploadOperation, errors
from api.schemas import IngestOut, LabelIn, TraceOut, utc_text
from api.uploads import read_upload
from appliance.points import DepthPoints
from appliance.records import Estimate, Hole, HolePage, Label
from appliance.services.holes import HoleFilter

SourceParam = Annotated[str | None, Parameter(
    description=("name of the upload (file name); a label only, never a path; wins over a "
                 "multipart upload's `source` field and file name"), max_length=255)]
GroupParam = Annotated[str | None, Parameter(
    description="source group for grouped cross-validation (default 'api')", max_length=255)]
HoleId = Annotated[str, Parameter(description="hole id (16 hex characters)", max_length=64)]


class HoleController(Controller):
    path = "/"
    tags = ["holes"]

    @post("/holes", operation_id="ingestHole", status_code=201,
          operation_class=UploadOperation,
          summary="Store a hole and estimate its depth points",
          responses={200: ResponseSpec(IngestOut, description="already stored (duplicate)"),
                     **errors(400, 401, 413, 422, 507)})
    async def ingest(self, request: Request[Any, Any, Any], daemon: DaemonDep,
                     source: SourceParam = None, group: GroupParam = None) -> Response[IngestOut]:
        upload = await read_upload(request, source)
        hole, estimate, created = await asyncio.to_thread(
            daemon.holes.ingest, upload.data, upload.source, group)
        out = IngestOut(hole=hole, estimate=estimate, created=created)
        return Response(out, status_code=201 if created else 200)

    @post("/estimate", operation_id="estimateUpload", status_code=200,
          operation_class=UploadOperation,
          summary="Estimate a hole's depth points without storing anything",
          responses=errors(400, 401, 413, 422))
    async def estimate_upload(self, request: Request[Any, Any, Any], daemon: DaemonDep,
                              source: SourceParam = None) -> Estimate:
        upload = await read_upload(request, source)
        # parsing runs in a worker thread; the model call is awaited, not waited for in a
        # thread, so every request in flight can join the next batch
        return await daemon.holes.estimate_bytes(upload.data, upload.source)

    @get("/holes", operation_id="listHoles", sync_to_thread=True,
         summary="List holes (needs-review: unlabelled, highest review priority first)",
         responses=errors(401))
    def list_holes(
        self, daemon: DaemonDep,
        status: Annotated[HoleFilter, Parameter(description=(
            "which holes; needs-review: the unlabelled ones, never estimated first, then by "
            "review priority (highest first), then estimates without one by ensemble spread"
        ))] = "all",
        since: Annotated[datetime | None, Parameter(
            description="only holes ingested at or after this time (ISO 8601)")] = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        offset: Annotated[int, Parameter(ge=0, le=10_000_000)] = 0,
        drill: Annotated[str | None, Parameter(
            description="only this drill's holes (its serial; 'unknown' without one)",
            max_length=200)] = None,
    ) -> HolePage:
        items, total = daemon.holes.list(status, utc_text(since), limit, offset, drill)
        return HolePage(items=items, total=total, limit=limit, offset=offset)

    @get("/holes/{hole_id:str}", operation_id="getHole", sync_to_thread=True,
         summary="One hole: metadata, latest label, stored estimate", responses=errors(401, 404))
    def get_hole(self, daemon: DaemonDep, hole_id: HoleId) -> Hole:
        return daemon.holes.get(hole_id)

    @get("/holes/{hole_id:str}/trace", operation_id="getHoleTrace",
         summary="A hole's samples, downsampled for plotting (keeps minima and maxima)",
         responses=errors(401, 404))
    async def get_trace(
        self, daemon: DaemonDep, hole_id: HoleId,
        max_points: Annotated[int, Parameter(ge=10, le=1_000_000)] = 2000,
    ) -> Response[TraceOut]:
        # a trace in memory is answered on the event loop, already encoded (a TraceOut's
        # JSON); only the store is read, and the answer encoded, in a thread
        body = daemon.holes.cached_trace_json(hole_id, max_points)
        if body is None:
            body = await asyncio.to_thread(daemon.holes.trace_json, hole_id, max_points)
        # the body is a TraceOut already encoded; Response's parameter is what the OpenAPI
        # schema documents, so the bytes are passed where a TraceOut is typed
        return Response(body, media_type=MediaType.JSON)  # type: ignore[arg-type]

    @get("/holes/{hole_id:str}/estimate", operation_id="getHoleEstimate", sync_to_thread=True,
         summary="The active model's estimate of a hole (stored, or computed and stored)",
         responses=errors(401, 404))
    def get_estimate(
        self, daemon: DaemonDep, hole_id: HoleId,
        fresh: Annotated[bool, Parameter(description="recompute even if stored")] = False,
    ) -> Estimate:
        return daemon.holes.estimate(hole_id, fresh, daemon.models.active_version())

    @put("/holes/{hole_id:str}/label", operation_id="labelHole", sync_to_thread=True,
         summary="Append an operator's label (entry < transition < exit, inside the trace)",
         responses=errors(401, 403, 404, 422),
          opt=needs("operator"))
    def put_label(self, request: Request[Any, Any, Any], daemon: DaemonDep, hole_id: HoleId,
                  data: JSONBody[LabelIn]) -> Label:
        points = DepthPoints(data.entry_mm, data.transition_mm, data.exit_mm)
        return daemon.holes.add_label(hole_id, points, data.by, actor_of(request))

    @get("/holes/{hole_id:str}/labels", operation_id="listHoleLabels", sync_to_thread=True,
         summary="A hole's label history, oldest first", responses=errors(401, 404))
    def get_labels(self, daemon: DaemonDep, hole_id: HoleId) -> list[Label]:
        return daemon.holes.labels(hole_id)
