"""OpenAPI pieces shared by the controllers: error answers and raw upload bodies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)

from api.schemas import ErrorOut
from appliance.services.daemon import Daemon


def errors(*codes: int) -> dict[int, ResponseSpec]:
    text = {400: "malformed request", 401: "missing or invalid API key",
            403: "the key's role may not do this (the answer names the role needed)",
            404: "not found", 429: "too many wrong API keys from this client: wait",
            409: "refused in the current state", 413: "body larger than the size limit",
            422: "input rejected, with the reason",
            507: "the disk of the home is full, or too full to start a job (the answer says "
                 "what could not be written or how much space is free); logged"}
    return {c: ResponseSpec(data_container=ErrorOut, description=text[c]) for c in codes}


@dataclass
class UploadOperation(Operation):
    """A hole upload: a Setitec file as raw bytes, or a JSON trace + result message pair, raw
    or as the file part of a multipart form."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description=(
                "A Setitec log as raw bytes (application/octet-stream, name it with the "
                "`source` query parameter), or a JSON body holding a trace message and its "
                "result message (see appliance.ingest.parse_bytes for the accepted shapes), "
                "or either as the `file` part of a multipart/form-data form (`curl -F "
                "file=@log.xls`; named by the `source` query parameter, else the form's "
                "`source` field, else the part's file name)."
            ),
            content={
                "application/octet-stream": OpenAPIMediaType(
                    schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)),
                "application/json": OpenAPIMediaType(schema=Schema(type=OpenAPIType.OBJECT)),
                "multipart/form-data": OpenAPIMediaType(schema=Schema(
                    type=OpenAPIType.OBJECT, required=["file"],
                    properties={
                        "file": Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY),
                        "source": Schema(type=OpenAPIType.STRING, max_length=255),
                    })),
            },
        )


DaemonDep: TypeAlias = NamedDependency[Daemon]
