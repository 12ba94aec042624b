"""Benchmark of the daemon over loopback HTTP (run by hand: python benchmarks/api.py).

Starts `appliance serve` on a fresh temp home (shipped baseline active) on a free loopback
port, unless --url/--key point at a running daemon, then with 32 concurrent clients:
  1. POST /estimate of a typical hole         target >= 100 req/s, p99 <= 300 ms, 0 errors
  2. GET /holes/{id}/trace?max_points=2000    target p99 <= 50 ms
  3. POST /holes of 1,000 distinct holes      target: count in the store == count sent
Prints the figures; the ratio line compares the two read paths measured in this run. With a
daemon it started, it also prints the daemon's CPU time per estimate: on a box shared with
other work the wall-clock figures move with the neighbours' load, the CPU time much less.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

from proctime import cpu_seconds, own_seconds  # noqa: E402

from appliance.ingest.setitec_writer import write_setitec  # noqa: E402
from appliance.synth import generate  # noqa: E402


def typical_hole() -> tuple[str, bytes]:
    """A real log when ../shared is there (a v9 file of median length), else a synthetic one."""
    real = REPO.parent / "shared" / "data" / "setitec"
    files = sorted(real.rglob("*.xls")) if real.is_dir() else []
    if files:
        sized = sorted(files, key=lambda p: p.stat().st_size)
        pick = sized[len(sized) // 2]
        return pick.name, pick.read_bytes()
    return "synthetic.xls", write_setitec(generate(1, 7)[0].trace)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class RawConnection:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams.

    httpx costs more CPU per request than the daemon does on a small route; on a 2-core box
    the load generator would then measure itself. This one only writes the request and reads
    Content-Length bytes back.
    """

    def __init__(self, host: str, port: int, key: str) -> None:
        self.host, self.port, self.key = host, port, key
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"",
                      content_type: str = "application/octet-stream") -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                f"Authorization: Bearer {self.key}\r\nContent-Length: {len(body)}\r\n")
        if body:
            head += f"Content-Type: {content_type}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        assert self.reader is not None
        header = await self.reader.readuntil(b"\r\n\r\n")
        status = int(header[9:12])
        length = 0
        for line in header.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def hammer(url: str, key: str, make, n: int, concurrency: int  # noqa: ANN001
                 ) -> tuple[list[float], list[int], float]:
    host, port = url.split("//", 1)[1].split(":")
    latencies: list[float] = []
    statuses: list[int] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        conn = RawConnection(host, int(port), key)
        try:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                method, path, body = make(i)
                t0 = time.perf_counter()
                try:
                    statuses.append(await conn.request(method, path, body))
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    statuses.append(0)
                    await conn.close()
                    conn = RawConnection(host, int(port), key)
                latencies.append(time.perf_counter() - t0)
        finally:
            await conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, statuses, time.perf_counter() - start


def report_cpu(pid: int | None, daemon_cpu: float | None, client_cpu: float, n: int,
               wall: float, main_cpu: float | None = None) -> None:
    """CPU time per request of the daemon (since daemon_cpu; of which its own process, since
    main_cpu, the rest its estimate workers) and of this load generator."""
    now = cpu_seconds(pid)
    client = 1000 * (time.process_time() - client_cpu) / n
    if pid is None or now is None or daemon_cpu is None:
        print(f"{'':<34} load generator CPU {client:.2f} ms per request")
        return
    used = now - daemon_cpu
    main_now = own_seconds(pid)
    split = ("" if main_cpu is None or main_now is None else
             f", of which its HTTP process {1000 * (main_now - main_cpu) / n:.2f} ms")
    print(f"{'':<34} daemon CPU {1000 * used / n:.2f} ms per request ({used / wall:.2f} cores "
          f"busy{split}); load generator CPU {client:.2f} ms per request")


def report(name: str, lat: list[float], statuses: list[int], wall: float) -> dict[str, float]:
    errors = sum(1 for s in statuses if not 200 <= s < 300)
    out = {"n": len(lat), "rps": len(lat) / wall, "p50_ms": 1000 * statistics.median(lat),
           "p95_ms": 1000 * pct(lat, 0.95), "p99_ms": 1000 * pct(lat, 0.99), "errors": errors}
    print(f"{name:<34} n={out['n']:5d}  {out['rps']:7.1f} req/s  p50 {out['p50_ms']:6.1f} ms  "
          f"p95 {out['p95_ms']:6.1f} ms  p99 {out['p99_ms']:6.1f} ms  errors {errors}"
          + (f" (statuses {sorted({s for s in statuses if not 200 <= s < 300})})"
             if errors else ""))
    return out


async def run(url: str, key: str, args: argparse.Namespace, pid: int | None = None) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=args.concurrency + 4)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits,
                                 timeout=httpx.Timeout(60.0)) as client:
        health = (await client.get("/health/details")).json()
        print(f"daemon {url}: model {health['active_model'] or 'rule-based'}, "
              f"{health['store']['holes']} holes; {args.concurrency} concurrent clients")
        name, data = typical_hole()
        octet = {"Content-Type": "application/octet-stream"}
        await client.post("/estimate", content=data, headers=octet)  # warm
        daemon_cpu, client_cpu = cpu_seconds(pid), time.process_time()
        main_cpu = None if pid is None else own_seconds(pid)
        est_lat, est_st, est_wall = await hammer(
            url, key, lambda i: ("POST", "/estimate", data), args.estimates, args.concurrency)
        est = report("POST /estimate (" + name[:18] + ")", est_lat, est_st, est_wall)
        report_cpu(pid, daemon_cpu, client_cpu, len(est_lat), est_wall, main_cpu)
        if args.estimate_only:
            return

        print(f"generating {args.holes} synthetic holes ...", flush=True)
        bodies = [write_setitec(h.trace) for h in generate(args.holes, args.seed)]
        before = (await client.get("/holes", params={"limit": 1})).json()["total"]
        ing_lat, ing_st, ing_wall = await hammer(
            url, key, lambda i: ("POST", f"/holes?source=bench_{args.seed}_{i:05d}.xls"
                                         f"&group=b{i % 5}", bodies[i]),
            len(bodies), args.concurrency)
        ing = report(f"POST /holes ({len(bodies)} holes)", ing_lat, ing_st, ing_wall)
        after = (await client.get("/holes", params={"limit": 1})).json()["total"]
        created = sum(1 for s in ing_st if s == 201)
        print(f"{'':<34} sent {len(bodies)}, answered 201: {created}, store grew by "
              f"{after - before}: {'nothing lost' if after - before == len(bodies) else 'LOST'}")

        page = (await client.get("/holes", params={"limit": 200})).json()["items"]
        ids = [h["id"] for h in page]
        def trace_req(i: int) -> tuple[str, str, bytes]:
            return "GET", f"/holes/{ids[i % len(ids)]}/trace?max_points=2000", b""

        # first pass reads every hole from the store once; the second is what an operator
        # paging through recent holes gets (the daemon keeps downsampled traces in memory)
        report("GET trace, first read of each hole", *await hammer(
            url, key, trace_req, len(ids), args.concurrency))
        trace = report("GET /holes/{id}/trace?max_points=2000", *await hammer(
            url, key, trace_req, args.traces, args.concurrency))
        report("GET /holes?status=needs-review", *await hammer(
            url, key, lambda i: ("GET", "/holes?status=needs-review&limit=50", b""),
            args.traces // 10, args.concurrency))
        print(f"ratio p99 estimate / p99 trace: {est['p99_ms'] / trace['p99_ms']:.1f}x")
        verdict = [("estimate >= 100 req/s", est["rps"] >= 100),
                   ("estimate p99 <= 300 ms", est["p99_ms"] <= 300),
                   ("estimate zero errors", est["errors"] == 0),
                   ("trace p99 <= 50 ms", trace["p99_ms"] <= 50),
                   ("ingest nothing lost", after - before == len(bodies) and ing["errors"] == 0)]
        for what, ok in verdict:
            print(f"  {'PASS' if ok else 'MISS'}  {what}")


def start_daemon(home: Path, model: Path | None, role: str = "integration"
                 ) -> tuple[subprocess.Popen[bytes], str, str]:
    from appliance.config import load_config
    from appliance.services.daemon import Daemon
    from appliance.services.keys import hash_key, new_key

    # first start in-process: registers and activates the baseline (or --model) in this home
    daemon = Daemon.open(load_config(home), schedule=False, baseline_dir=model)
    key = new_key()
    daemon.store.add_api_key("bench", hash_key(key), role=role)
    daemon.close()
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve", "--home", str(home),
                             "--host", "127.0.0.1", "--port", str(port), "--no-schedule"],
                            cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", headers={"Authorization": f"Bearer {key}"},
                         timeout=2).status_code == 200:
                return proc, url, key
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"appliance serve exited with {proc.returncode}")
        time.sleep(0.3)
    proc.terminate()
    raise SystemExit("appliance serve did not come up in 120 s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="a running daemon (default: start one on a temp home)")
    p.add_argument("--key", help="API key for --url")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--estimates", type=int, default=1000)
    p.add_argument("--traces", type=int, default=2000)
    p.add_argument("--holes", type=int, default=1000)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--estimate-only", action="store_true",
                   help="measure POST /estimate only (quicker before/after comparisons)")
    p.add_argument("--model", type=Path, default=None,
                   help="model folder to serve (default: the shipped models/baseline)")
    args = p.parse_args()
    if args.url:
        asyncio.run(run(args.url, args.key or "", args))
        return
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        proc, url, key = start_daemon(Path(tmp) / "home", args.model)
        try:
            asyncio.run(run(url, key, args, proc.pid))
        finally:
            proc.terminate()
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
