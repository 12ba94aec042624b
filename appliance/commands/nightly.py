"""`appliance nightly`: ask the running daemon to run its nightly fine-tune routine now.

Talks to the daemon over HTTP only (it owns the store). The key comes from --key, else
$APPLIANCE_KEY (the systemd timer unit sets it from an environment file).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from appliance.commands._common import add_home, add_json, print_json

if TYPE_CHECKING:
    # imported inside run(): the CLI starts without loading an HTTP client
    import httpx

EXIT_OK, EXIT_REFUSED = 0, 4
TERMINAL = ("succeeded", "failed", "cancelled")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "nightly", help="ask the running daemon to fine-tune now if enough new labels exist")
    add_home(p)
    p.add_argument("--config", default=None, help="TOML settings (for the daemon's port)")
    p.add_argument("--url", default=None,
                   help="daemon URL (default: http://<host>:<port> from the settings)")
    p.add_argument("--key", default=None, help="API key (default: $APPLIANCE_KEY)")
    p.add_argument("--force", action="store_true",
                   help="start even with fewer new labels than the configured minimum")
    p.add_argument("--wait", action="store_true",
                   help="wait for the job to finish; exit 4 if it fails")
    p.add_argument("--timeout", type=float, default=6 * 3600.0,
                   help="with --wait: give up after this many seconds")
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import httpx

    from appliance.config import load_config

    url = args.url
    if url is None:
        cfg = load_config(args.home, args.config)
        url = f"http://{cfg.host}:{cfg.port}"
    key = args.key or os.environ.get("APPLIANCE_KEY")
    if not key:
        print("appliance nightly: no API key: pass --key or set APPLIANCE_KEY "
              "(create one with `appliance keys create NAME --role operator`)",
              file=sys.stderr)
        return 2
    headers = {"Authorization": f"Bearer {key}"}
    try:
        with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=30.0) as client:
            r = client.post("/jobs/nightly", json={"force": bool(args.force)})
            if r.status_code != 200:
                print(f"appliance nightly: the daemon at {url} answered {r.status_code}: "
                      f"{_detail(r)}", file=sys.stderr)
                return EXIT_REFUSED
            outcome = r.json()
            job = outcome.get("job")
            if args.wait and job:
                job = _wait(client, job["id"], args.timeout)
                outcome["job"] = job
    except httpx.HTTPError as exc:
        print(f"appliance nightly: no daemon answers at {url} ({exc.__class__.__name__}); "
              "start it with `appliance serve`", file=sys.stderr)
        return EXIT_REFUSED
    if args.json:
        print_json(outcome)
    else:
        print(outcome["reason"])
        if job:
            print(f"job {job['id']}: {job['status']}"
                  + (f" ({job['error']})" if job.get("error") else ""))
    if job and args.wait and job["status"] != "succeeded":
        return EXIT_REFUSED
    return EXIT_OK


def _wait(client: httpx.Client, job_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/jobs/{job_id}").raise_for_status().json()
        if job["status"] in TERMINAL or time.monotonic() > deadline:
            return job
        time.sleep(2.0)


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail"))
    except ValueError:
        return response.text[:200]
