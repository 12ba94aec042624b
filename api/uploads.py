"""A hole upload's bytes and name, from a raw body or a multipart/form-data form.

Raw bodies (a Setitec log as application/octet-stream, a JSON message pair) are what rigs and
scripts send; a form with a file part is what `curl -F file=@log.xls` and browsers send. Both
are read through Litestar's request stream, so the daemon's body-size cap (413) holds for each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.exceptions import ClientException

FILE_FIELD = "file"
SOURCE_FIELD = "source"


@dataclass(frozen=True)
class Upload:
    data: bytes
    source: str | None  # None: the service names it by its content hash


async def read_upload(request: Request[Any, Any, Any], source: str | None) -> Upload:
    """The uploaded bytes; source: the `source` query parameter, which wins over a form's
    `source` field, which wins over the file part's file name."""
    media_type, _ = request.content_type
    if media_type != RequestEncodingType.MULTI_PART:
        return Upload(await request.body(), source)
    try:
        form = await request.form()
    except UnicodeDecodeError as exc:
        # the form parser decodes every part without a file name as text: a log sent that
        # way is a client's mistake, not the daemon's failure
        raise ClientException(f"multipart upload has a text field that is not UTF-8 text "
                              f"({exc.reason}): send the log as a file part (curl -F "
                              f"{FILE_FIELD}=@log.xls)") from exc
    files = form.getall(FILE_FIELD) if FILE_FIELD in form else []
    if len(files) != 1 or not isinstance(files[0], UploadFile):
        raise ClientException(_missing_file(form.keys(), files))
    part = files[0]
    named = form.get(SOURCE_FIELD)
    if source is None and isinstance(named, str) and named.strip():
        source = named
    return Upload(await part.read(), source if source is not None else (part.filename or None))


def _missing_file(fields: Iterable[str], files: list[object]) -> str:
    """Why a form carries no usable file part, naming what it does carry."""
    if len(files) > 1:
        return (f"multipart upload has {len(files)} parts named {FILE_FIELD!r}: send one hole "
                "per request")
    seen = ", ".join(repr(f) for f in sorted(fields)) or "no fields"
    if files:
        return (f"multipart field {FILE_FIELD!r} is text, not a file: send it with a file "
                f"name (curl -F {FILE_FIELD}=@log.xls)")
    return (f"multipart upload has no file part named {FILE_FIELD!r} (got {seen}): send the "
            f"log as -F {FILE_FIELD}=@log.xls")
