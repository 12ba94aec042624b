"""Benchmark: do open event streams slow other requests? (run by hand: python benchmarks/sse.py)

Starts `appliance serve` on a fresh temp home (shipped baseline active) on a free loopback
port, ingests and labels a few synthetic holes, starts a fine-tune and pauses its training
child (SIGSTOP: the job stays `running`, its streams stay open, and no training competes for
the CPU), then measures the p50 of `GET /holes` from one client with 0 and then with 50 open
`GET /jobs/{id}/events` streams in the same run. Target: the streams add <= 10 ms.
The job is cancelled and the daemon stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path
from types import ModuleType

import httpx

HERE = Path(__file__).resolve().parent
TARGET_MS = 10.0
OPEN_S = 60.0
MEASURE_S = 30.0  # a starved daemon is measured on fewer requests rather than for ever


def _bench_api() -> ModuleType:
    """benchmarks/api.py (its daemon start and raw client), loaded by path: the name `api` is
    the REST package's."""
    spec = importlib.util.spec_from_file_location("bench_api", HERE / "api.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _bench_api()


def running_job(url: str, key: str, holes: int) -> tuple[str, int]:
    """(job id, training child's pid): a fine-tune whose child is paused."""
    from appliance.ingest.setitec_writer import write_setitec
    from appliance.synth import generate

    h = {"Authorization": f"Bearer {key}"}
    print(f"ingesting and labelling {holes} holes, starting a fine-tune ...", flush=True)
    with httpx.Client(base_url=url, headers=h, timeout=120) as client:
        for i, hole in enumerate(generate(holes, 11)):
            r = client.post("/holes", params={"source": f"sse_{i:03d}.xls", "group": f"g{i % 3}"},
                            content=write_setitec(hole.trace),
                            headers={"Content-Type": "application/octet-stream"})
            r.raise_for_status()
            hole_id = r.json()["hole"]["id"]
            client.put(f"/holes/{hole_id}/label",
                       json={**hole.truth.as_dict(), "by": "bench"}).raise_for_status()
        r = client.post("/jobs/fine-tune", json={"folds": 2, "epochs": 1})
        r.raise_for_status()
        job_id = r.json()["id"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = client.get(f"/jobs/{job_id}").json()
            pid = (job.get("progress") or {}).get("pid")
            if pid:
                os.kill(pid, signal.SIGSTOP)
                return job_id, int(pid)
            if job["status"] not in ("queued", "running"):
                raise SystemExit(f"the fine-tune ended before it could be paused: {job}")
            time.sleep(0.02)
    raise SystemExit("the fine-tune's child did not start in 120 s")


async def open_stream(host: str, port: int, key: str, job_id: str
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An events stream that has delivered its first event."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write((f"GET /jobs/{job_id}/events HTTP/1.1\r\nHost: {host}\r\n"
                  f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if head[9:12] != b"200":
        raise SystemExit(f"events stream refused: {head[:200]!r}")
    await reader.readuntil(b"event: job")
    return reader, writer


async def p50_of_holes(host: str, port: int, key: str, n: int) -> float:
    """p50 in ms of n sequential requests, or of those answered within MEASURE_S."""
    conn = bench.RawConnection(host, port, key)
    try:
        await conn.request("GET", "/holes?limit=50")  # connection up, route warm
        latencies: list[float] = []
        deadline = time.perf_counter() + MEASURE_S
        while len(latencies) < n and time.perf_counter() < deadline:
            t0 = time.perf_counter()
            status = await conn.request("GET", "/holes?limit=50")
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                raise SystemExit(f"GET /holes answered {status}")
        return 1000 * statistics.median(latencies)
    finally:
        await conn.close()


async def measure(url: str, key: str, job_id: str, streams: int, n: int) -> tuple[float, float]:
    host, port_text = url.split("//", 1)[1].split(":")
    port = int(port_text)
    quiet = await p50_of_holes(host, port, key, n)
    print(f"opening {streams} event streams ...", flush=True)
    try:
        opened = await asyncio.wait_for(asyncio.gather(
            *(open_stream(host, port, key, job_id) for _ in range(streams))), OPEN_S)
    except TimeoutError:
        raise SystemExit(f"  MISS  {streams} event streams did not all deliver their first "
                         f"event within {OPEN_S:.0f} s") from None
    try:
        await asyncio.sleep(1.0)  # let the streams settle into waiting
        busy = await p50_of_holes(host, port, key, n)
        for reader, _ in opened:  # every stream is still open (not ended, not cut)
            if reader.at_eof():
                raise SystemExit("an events stream ended while the job was running")
    finally:
        for _, writer in opened:
            writer.close()
    return quiet, busy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--streams", type=int, default=50)
    p.add_argument("--requests", type=int, default=300, help="GET /holes per measurement")
    p.add_argument("--holes", type=int, default=12, help="labelled holes to fine-tune on")
    p.add_argument("--model", type=Path, default=None,
                   help="model folder to serve (default: the shipped models/baseline)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sse-") as tmp:
        proc, url, key = bench.start_daemon(Path(tmp) / "home", args.model, role="operator")
        pid = None
        try:
            job_id, pid = running_job(url, key, args.holes)
            quiet, busy = asyncio.run(measure(url, key, job_id, args.streams, args.requests))
            print(f"GET /holes p50 with  0 open event streams: {quiet:7.2f} ms")
            print(f"GET /holes p50 with {args.streams:2d} open event streams: {busy:7.2f} ms")
            added = busy - quiet
            verdict = "PASS" if added <= TARGET_MS else "MISS"
            print(f"  {verdict}  the streams add {added:+.2f} ms (target <= {TARGET_MS:.0f} ms)")
        finally:
            if pid is not None:
                os.kill(pid, signal.SIGCONT)
                httpx.delete(f"{url}/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"},
                             timeout=60)
            proc.terminate()
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
