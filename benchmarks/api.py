"""Benchmark of the daemon over loopback HTTP (run by hand: python benchmarks/api.py).

Starts `appliance serve` on a fresh temp home (shipped baseline active) on a free loopback
port, unless --url/--key point at a running daemon, then with 32 concurrent clients:
  1. POST /estimate of a typical hole         target >= 100 req/s, p99 <= 300 ms, 0 errors
  2. GET /holes/{id}/trace?max_points=2000    target p99 <= 50 ms
  3. POST /holes of 1,000 distinct holes      target: count in the store == count sent
Prints the figures; the ratio line compares the two read paths measured in this run.
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

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


async def hammer(client: httpx.AsyncClient, make, n: int, concurrency: int  # noqa: ANN001
                 ) -> tuple[list[float], list[int], float]:
    latencies: list[float] = []
    statuses: list[int] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            method, url, kwargs = make(i)
            t0 = time.perf_counter()
            try:
                r = await client.request(method, url, **kwargs)
                statuses.append(r.status_code)
            except httpx.HTTPError:
                statuses.append(0)
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, statuses, time.perf_counter() - start


def report(name: str, lat: list[float], statuses: list[int], wall: float) -> dict[str, float]:
    errors = sum(1 for s in statuses if not 200 <= s < 300)
    out = {"n": len(lat), "rps": len(lat) / wall, "p50_ms": 1000 * statistics.median(lat),
           "p95_ms": 1000 * pct(lat, 0.95), "p99_ms": 1000 * pct(lat, 0.99), "errors": errors}
    print(f"{name:<34} n={out['n']:5d}  {out['rps']:7.1f} req/s  p50 {out['p50_ms']:6.1f} ms  "
          f"p95 {out['p95_ms']:6.1f} ms  p99 {out['p99_ms']:6.1f} ms  errors {errors}"
          + (f" (statuses {sorted({s for s in statuses if not 200 <= s < 300})})"
             if errors else ""))
    return out


async def run(url: str, key: str, args: argparse.Namespace) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=args.concurrency + 4)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits,
                                 timeout=httpx.Timeout(60.0)) as client:
        health = (await client.get("/health")).json()
        print(f"daemon {url}: model {health['active_model'] or 'rule-based'}, "
              f"{health['store']['holes']} holes; {args.concurrency} concurrent clients")
        name, data = typical_hole()
        octet = {"Content-Type": "application/octet-stream"}
        await client.post("/estimate", content=data, headers=octet)  # warm
        est = report("POST /estimate (" + name[:18] + ")", *await hammer(
            client, lambda i: ("POST", "/estimate", {"content": data, "headers": octet}),
            args.estimates, args.concurrency))

        print(f"generating {args.holes} synthetic holes ...", flush=True)
        bodies = [write_setitec(h.trace) for h in generate(args.holes, args.seed)]
        before = (await client.get("/holes", params={"limit": 1})).json()["total"]
        ing_lat, ing_st, ing_wall = await hammer(
            client, lambda i: ("POST", "/holes", {
                "content": bodies[i], "headers": octet,
                "params": {"source": f"bench_{args.seed}_{i:05d}.xls", "group": f"b{i % 5}"}}),
            len(bodies), args.concurrency)
        ing = report(f"POST /holes ({len(bodies)} holes)", ing_lat, ing_st, ing_wall)
        after = (await client.get("/holes", params={"limit": 1})).json()["total"]
        created = sum(1 for s in ing_st if s == 201)
        print(f"{'':<34} sent {len(bodies)}, answered 201: {created}, store grew by "
              f"{after - before}: {'nothing lost' if after - before == len(bodies) else 'LOST'}")

        page = (await client.get("/holes", params={"limit": 200})).json()["items"]
        ids = [h["id"] for h in page]
        trace = report("GET /holes/{id}/trace?max_points=2000", *await hammer(
            client, lambda i: ("GET", f"/holes/{ids[i % len(ids)]}/trace",
                               {"params": {"max_points": 2000}}),
            args.traces, args.concurrency))
        print(f"ratio p99 estimate / p99 trace: {est['p99_ms'] / trace['p99_ms']:.1f}x")
        verdict = [("estimate >= 100 req/s", est["rps"] >= 100),
                   ("estimate p99 <= 300 ms", est["p99_ms"] <= 300),
                   ("estimate zero errors", est["errors"] == 0),
                   ("trace p99 <= 50 ms", trace["p99_ms"] <= 50),
                   ("ingest nothing lost", after - before == len(bodies) and ing["errors"] == 0)]
        for what, ok in verdict:
            print(f"  {'PASS' if ok else 'MISS'}  {what}")


def start_daemon(home: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    from appliance.services.keys import hash_key, new_key
    from appliance.store import Store

    home.mkdir(parents=True, exist_ok=True)
    key = new_key()
    with Store.open(home) as store:
        store.add_api_key("bench", hash_key(key))
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
    args = p.parse_args()
    if args.url:
        asyncio.run(run(args.url, args.key or "", args))
        return
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        proc, url, key = start_daemon(Path(tmp) / "home")
        try:
            asyncio.run(run(url, key, args))
        finally:
            proc.terminate()
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
