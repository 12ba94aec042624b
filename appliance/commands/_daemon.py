"""Verbs that go through a running daemon's API when it owns the store (keys, backup).

The daemon is found at --url, else http://<host>:<port> of the home's settings; the key is
--key, else $APPLIANCE_KEY, else the daemon's first admin key in <home>/admin.key.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.errors import ApplianceError, ConflictError, NotFoundError, ValidationError

if TYPE_CHECKING:
    import httpx


def add_daemon_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None,
                        help="a running daemon (default: http://<host>:<port> of the settings)")
    parser.add_argument("--key", default=None,
                        help="an admin key for a running daemon (default: $APPLIANCE_KEY, "
                             "else <home>/admin.key)")


def via_daemon(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None,
               purpose: str, timeout: float = 30.0) -> Any:
    """The daemon's JSON answer; its refusals as the domain's errors. purpose completes
    "pass an admin key ... to <purpose> through it"."""
    import httpx

    from appliance.config import load_config
    from appliance.home import FIRST_KEY_FILE, resolve_home

    url = args.url
    if url is None:
        cfg = load_config(args.home)
        url = f"http://{cfg.host}:{cfg.port}"
    key = args.key or os.environ.get("APPLIANCE_KEY")
    first = Path(resolve_home(args.home)) / FIRST_KEY_FILE
    if not key and first.is_file():
        try:
            key = first.read_text().strip()
        except OSError:
            key = None
    if not key:
        raise ValidationError(f"a daemon holds the store: pass an admin key (--key or "
                              f"APPLIANCE_KEY) to {purpose} through it at {url}")
    try:
        r = httpx.request(method, url.rstrip("/") + path, json=body, timeout=timeout,
                          headers={"Authorization": f"Bearer {key}"})
    except httpx.HTTPError as exc:
        raise ApplianceError(f"a daemon holds the store but {url} does not answer: {exc}") \
            from None
    if r.status_code == 404:
        raise NotFoundError(_detail(r))
    if r.status_code == 409:
        raise ConflictError(_detail(r))
    if r.status_code >= 400:
        raise ValidationError(f"the daemon at {url} answered {r.status_code}: {_detail(r)}")
    return r.json()


def _detail(r: httpx.Response) -> str:
    try:
        return str(r.json().get("detail", r.text))
    except ValueError:
        return r.text
