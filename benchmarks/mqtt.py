"""Benchmark of the daemon's MQTT bridge on a real broker (run by hand: python benchmarks/mqtt.py).

Starts Mosquitto (tests/mqtt_broker.py) on a free loopback port and `appliance serve --mqtt`
on a fresh temp home, then plays a rig: holes (a result, a trace and a heads message each,
docs/mqtt-contract.md) published at QoS 1 in a random order on the `OPCPUBSUB/{toolbox}/{tool}/`
topics of 4 tools, and reads the daemon's KeyPoints answers back at QoS 1. Each answer is
matched to its hole by (toolbox, tool, ResultId, SourceTimestamp). Holes are the real logs of
../shared/data/setitec (synthetic ones when ../shared is absent), each published copy given
its own ResultId and timestamp.

  1. rising rates (25 .. 200 holes/s, a few seconds each): the highest rate with every hole
     answered within ~2 s of the last publish          target >= 100 holes/s (300 messages/s)
  2. latency, trace published -> KeyPoints received, at 50 holes/s      target p99 <= 500 ms
  3. kill -9 of the daemon mid-stream, restarted on the same home          target: every hole
  4. graceful broker restart mid-stream                                    answered exactly once

--fake-daemon answers from a trivial in-process responder instead of the daemon: it measures
what this load generator and the broker manage on this box (the ceiling of the figures above).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import itertools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))

from loopback import free_port  # noqa: E402
from mqtt_broker import Mosquitto, mosquitto_path  # noqa: E402
from proctime import cpu_seconds  # noqa: E402

from appliance.errors import IngestError  # noqa: E402
from appliance.ingest import parse_bytes  # noqa: E402
from appliance.ingest.json_writer import NAMESPACE, write_json_messages  # noqa: E402
from appliance.synth import generate  # noqa: E402
from appliance.trace import Trace  # noqa: E402

SHARED_LOGS = REPO.parent / "shared" / "data" / "setitec"
# the contract's output topic: one level below {root}/{toolbox}/{tool}
KEYPOINTS = "ResultManagement.Results.0.ResultContent.DepthEstimation.KeyPoints"
TOPIC_OF = {"result": "ResultManagement", "trace": "ResultManagement/Trace",
            "heads": "AssetManagement/Heads"}
Key = tuple[str, str, str, str]  # toolbox, tool, ResultId, SourceTimestamp


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def mqtt_client(client_id: str) -> mqtt.Client:
    """MQTT 3.1.1, persistent session: a broker restart must not lose what is in flight to
    or from the benchmark, or the loss would be blamed on the daemon."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=False, protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(0)  # 0: no cap; the loopback RTT is not the subject
    client.max_queued_messages_set(0)
    client.reconnect_delay_set(1, 2)
    return client


def connect(client: mqtt.Client, broker: Mosquitto, timeout_s: float = 10.0) -> None:
    up = threading.Event()
    previous = client.on_connect

    def on_connect(c: mqtt.Client, u: object, flags: object, rc: object, props: object) -> None:
        if previous is not None:
            previous(c, u, flags, rc, props)
        up.set()

    client.on_connect = on_connect
    client.connect(broker.host, broker.port, keepalive=30)
    client.loop_start()
    if not up.wait(timeout_s):
        raise SystemExit(f"could not connect to the broker {broker.url}:\n{broker.log_tail()}")


# -- holes -------------------------------------------------------------------------------------
@dataclasses.dataclass
class Hole:
    toolbox: str
    tool: str
    result_id: str
    stamp: str
    machine_id: str
    head_id: str | None
    messages: list[tuple[str, str, bytes]]  # (kind, topic, payload), in publishing order
    size: int = 0
    sent_trace: float | None = None  # monotonic time its trace message was handed to paho
    sent_last: float | None = None

    @property
    def key(self) -> Key:
        return (self.toolbox, self.tool, self.result_id, self.stamp)


def load_sources(pool: int, seed: int) -> tuple[list[Trace], str]:
    """Up to `pool` parsed real logs (spread over the whole set), else synthetic holes."""
    files = sorted(p for p in SHARED_LOGS.rglob("*") if p.suffix.lower() == ".xls") \
        if SHARED_LOGS.is_dir() else []
    random.Random(seed).shuffle(files)
    traces: list[Trace] = []
    for path in files:
        try:
            trace = parse_bytes(path.read_bytes(), path.name)
        except IngestError:
            continue  # the corpus has deliberately broken logs
        if len(trace):
            traces.append(trace)
        if len(traces) >= pool:
            break
    if traces:
        return traces, f"{len(traces)} real logs of {SHARED_LOGS}"
    return [h.trace for h in generate(pool, seed)], f"{pool} synthetic holes (no ../shared)"


class HoleFactory:
    """Unique holes from a few source traces: every copy gets its own ResultId (= head global
    counter) and its own SourceTimestamp (= cycle date), as a real tool's next hole would."""

    def __init__(self, sources: list[Trace], n_tools: int, root: str, heads: bool,
                 seed: int) -> None:
        self.sources = sources
        self.root = root
        self.heads = heads
        self.rng = random.Random(seed)
        self.tools = [(f"toolbox{i // 2 + 1}", f"tool{i + 1}") for i in range(n_tools)]
        # per run, so that a second run against the same broker never repeats a key
        self.ids = itertools.count(int(time.time()) % 100_000 * 1_000)
        self.epoch = dt.datetime(2025, 1, 1)
        self.turn = itertools.count()

    def build(self, n: int) -> list[Hole]:
        return [self.one() for _ in range(n)]

    def one(self) -> Hole:
        i = next(self.turn)
        toolbox, tool = self.tools[i % len(self.tools)]
        tool_no = i % len(self.tools) + 1
        rid = next(self.ids)
        source = self.sources[i % len(self.sources)]
        cycle_date = (self.epoch + dt.timedelta(seconds=rid)).strftime("%Y-%m-%dT%H:%M:%S")
        machine_id = f"2312004{tool_no}"
        head_id = f"E0040100{tool_no:08X}" if self.heads else None
        meta = dataclasses.replace(
            source.meta, head_global_counter=rid, cycle_date=cycle_date,
            extra={**source.meta.extra, "result_serial": machine_id, "device": f"BENCH{tool_no}",
                   "head_serial": head_id or ""})
        written = write_json_messages(dataclasses.replace(source, meta=meta))
        stamp = cycle_date + "Z"  # what write_json_messages puts in every SourceTimestamp
        base = f"{self.root}/{toolbox}/{tool}/"
        messages = [("result", base + TOPIC_OF["result"], written["Result.json"]),
                    ("trace", base + TOPIC_OF["trace"], written["Trace.json"])]
        if head_id is not None:
            messages.append(("heads", base + TOPIC_OF["heads"],
                             heads_message(written, head_id, rid, stamp)))
        self.rng.shuffle(messages)
        return Hole(toolbox, tool, str(rid), stamp, machine_id, head_id, messages,
                    size=sum(len(m[2]) for m in messages))


def heads_message(written: dict[str, bytes], head_id: str, rid: int, stamp: str) -> bytes:
    """The writer's Heads message carries only the head's name; a rig's also carries the
    head serial (-> HeadId) and LifeTimeCycleCounter (= ResultId), which the bridge pairs on
    (data/mqtt/data_20250326/Heads.json)."""
    envelope = json.loads(written.get("Heads.json") or written["Result.json"])
    device = envelope["Messages"]["DataSetWriterId"]
    prefix = f"{NAMESPACE}{device}.AssetManagement.Assets.Heads.0."
    payload = {k: v for k, v in envelope["Messages"]["Payload"].items()
               if k.startswith(prefix)}  # keeps DefaultInstanceBrowseName when there is one
    payload[prefix + "Identification.SerialNumber"] = {"Value": head_id,
                                                       "SourceTimestamp": stamp}
    payload[prefix + "LifetimeCounters.0.LifeTimeCycleCounter"] = {"Value": rid,
                                                                   "SourceTimestamp": stamp}
    envelope["MessageId"] = str(uuid.uuid4())
    envelope["Messages"]["Payload"] = payload
    return json.dumps(envelope, separators=(",", ":")).encode("utf-8")


# -- the rig side: publisher and KeyPoints reader ----------------------------------------------
class Answers:
    """Every KeyPoints message received, by hole key, with its arrival time."""

    def __init__(self, broker: Mosquitto, root: str) -> None:
        self.topic = f"{root}/+/+/{KEYPOINTS}"
        self.lock = threading.Condition()
        self.got: dict[Key, list[tuple[float, dict, bool]]] = defaultdict(list)
        self.unreadable = 0
        self.client = mqtt_client(f"bench-answers-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda c, u, mid, codes, props: subscribed.set()
        connect(self.client, broker)
        if not subscribed.wait(10):
            raise SystemExit(f"the broker did not confirm the subscription to {self.topic}")

    def _on_connect(self, c: mqtt.Client, u: object, flags: object, rc: object,
                    props: object) -> None:
        # the session keeps the subscription; renewing it costs nothing and covers a broker
        # that lost its persistence
        c.subscribe(self.topic, qos=1)

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        levels = msg.topic.split("/")
        try:
            body = json.loads(msg.payload)
            key = (levels[1], levels[2], str(body["ResultId"]), str(body["SourceTimestamp"]))
        except (ValueError, KeyError, IndexError, TypeError):
            with self.lock:
                self.unreadable += 1
            return
        with self.lock:
            self.got[key].append((now, body, bool(msg.dup)))
            self.lock.notify_all()

    def wait(self, holes: list[Hole], deadline: float, quiet_s: float = 0.0) -> None:
        """Until every hole has an answer or the deadline, then quiet_s more for duplicates."""
        keys = [h.key for h in holes]
        with self.lock:
            while time.monotonic() < deadline:
                if all(k in self.got for k in keys):
                    break
                self.lock.wait(min(0.2, max(0.0, deadline - time.monotonic())))
        if quiet_s > 0:
            time.sleep(quiet_s)

    def answered(self, holes: list[Hole]) -> int:
        with self.lock:
            return sum(1 for h in holes if h.key in self.got)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Publisher:
    def __init__(self, broker: Mosquitto) -> None:
        self.client = mqtt_client(f"bench-rig-{uuid.uuid4().hex[:8]}")
        # PUBACKs by message id: a message published while disconnected keeps rc NO_CONN in
        # its MQTTMessageInfo even once paho has re-sent it and the broker acknowledged it
        self.acked: set[int] = set()
        self.acked_lock = threading.Condition()
        self.client.on_publish = self._on_publish
        connect(self.client, broker)
        self.mids: list[int] = []
        self.failed = 0

    def _on_publish(self, c: mqtt.Client, u: object, mid: int, rc: object,
                    props: object) -> None:
        with self.acked_lock:
            self.acked.add(mid)
            self.acked_lock.notify_all()

    def stream(self, holes: list[Hole], rate: float,
               midway: Callable[[], None] | None = None) -> tuple[float, float, float]:
        """Publish the holes at `rate` holes/s; (first start, last start, worst lag) in
        monotonic seconds. `midway` runs in a thread when half of them are out."""
        self.mids = []
        self.failed = 0
        with self.acked_lock:
            self.acked.clear()
        lag = 0.0
        t0 = time.monotonic()
        last = t0
        for i, hole in enumerate(holes):
            due = t0 + i / rate
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
            else:
                lag = max(lag, now - due)
            if midway is not None and i == len(holes) // 2:
                threading.Thread(target=midway, name="fault", daemon=True).start()
            last = time.monotonic()
            for kind, topic, payload in hole.messages:
                stamp = time.monotonic()
                info = self.client.publish(topic, payload, qos=1)
                # NO_CONN is fine: paho keeps QoS 1 messages and sends them on reconnect
                if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                    self.failed += 1
                self.mids.append(info.mid)
                if kind == "trace":
                    hole.sent_trace = stamp
            hole.sent_last = time.monotonic()
            hole.messages = []  # paho holds its own copy until the PUBACK
        return t0, last, lag

    def unacked(self, timeout_s: float) -> int:
        """Messages of the last stream the broker has not PUBACKed within timeout_s."""
        deadline = time.monotonic() + timeout_s
        with self.acked_lock:
            while True:
                left = sum(1 for mid in self.mids if mid not in self.acked)
                if not left or time.monotonic() >= deadline:
                    return left
                self.acked_lock.wait(min(0.1, max(0.0, deadline - time.monotonic())))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- the daemon --------------------------------------------------------------------------------
class Daemon:
    """`appliance serve --mqtt` on a home that outlives its processes (kill -9, restart)."""

    def __init__(self, home: Path, broker_url: str, log_path: Path, root: str) -> None:
        self.home = home
        self.broker_url = broker_url
        self.log_path = log_path
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.key = ""

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self, timeout_s: float = 180.0) -> float:
        """Start and wait for /health; seconds it took."""
        t0 = time.monotonic()
        settings = self.home / "appliance.toml"
        if self.root != "OPCPUBSUB" and not settings.exists():
            # serve has no flag for the root topic; the home's settings file is read at start
            self.home.mkdir(parents=True, exist_ok=True)
            settings.write_text(f"[mqtt]\nroot = {json.dumps(self.root)}\n", encoding="utf-8")
        cmd = [sys.executable, "-m", "appliance.cli", "serve", "--home", str(self.home),
               "--host", "127.0.0.1", "--port", str(self.port), "--no-schedule",
               "--mqtt", self.broker_url]
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        key_file = self.home / "admin.key"
        deadline = t0 + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"appliance serve exited with {self.proc.returncode}:\n"
                                 f"{self.log_tail()}")
            if not self.key and key_file.is_file():
                self.key = key_file.read_text(encoding="utf-8").strip()
            if self.key:
                try:
                    if self.get("/health").status_code == 200:
                        return time.monotonic() - t0
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"appliance serve did not answer /health in {timeout_s:.0f} s:\n"
                         f"{self.log_tail()}")

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, headers={"Authorization": f"Bearer {self.key}"},
                         timeout=5)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.is_file():
            return "(no daemon log)"
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


class FakeDaemon:
    """Pairs a hole's messages by key and answers fixed KeyPoints: no parsing of the arrays,
    no estimate, no store. What is left is the cost of the broker and of this benchmark."""

    def __init__(self, broker: Mosquitto, root: str, heads: bool) -> None:
        self.root = root
        self.kinds = {"result", "trace", "heads"} if heads else {"result", "trace"}
        self.partial: dict[Key, set[str]] = defaultdict(set)
        self.head_ids: dict[Key, str] = {}
        self.done: set[Key] = set()
        self.client = mqtt_client(f"bench-fake-daemon-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(
            [(f"{root}/+/+/{TOPIC_OF[k]}", 1) for k in self.kinds])
        self.client.on_message = self._on_message
        connect(self.client, broker)

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        levels = msg.topic.split("/")
        kind = {"ResultManagement": "result", "Trace": "trace", "Heads": "heads"}[levels[-1]]
        payload = json.loads(msg.payload)["Messages"]["Payload"]
        rid = next(str(v["Value"]) for k, v in payload.items()
                   if k.endswith(("ResultMetaData.ResultId", "StepResultId",
                                  "LifeTimeCycleCounter")))
        stamp = next(iter(payload.values()))["SourceTimestamp"]
        key = (levels[1], levels[2], rid, stamp)
        if key in self.done:
            return
        self.partial[key].add(kind)
        if kind == "heads":
            self.head_ids[key] = next((str(v["Value"]) for k, v in payload.items()
                                       if k.endswith("Identification.SerialNumber")), "")
        if self.partial[key] >= self.kinds:
            del self.partial[key]
            self.done.add(key)
            answer = {"SourceTimestamp": stamp, "MachineId": "0", "ResultId": rid,
                      "HeadId": self.head_ids.pop(key, None), "Value": [1.0, 2.0, 3.0]}
            c.publish(f"{self.root}/{levels[1]}/{levels[2]}/{KEYPOINTS}",
                      json.dumps(answer), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- phases ------------------------------------------------------------------------------------
@dataclasses.dataclass
class Phase:
    name: str
    rate: float
    holes: list[Hole]
    achieved: float = 0.0
    lag_s: float = 0.0
    last_publish: float = 0.0
    unacked: int = 0
    failed_publish: int = 0
    answered: int = 0
    missing: int = 0
    # holes the daemon answered more than once (separate publications reaching the reader)
    duplicated: int = 0
    # holes received more than once only because the broker re-sent one publication (DUP
    # flag): QoS 1 allows it across a broker restart, and the daemon cannot prevent it
    redelivered: int = 0
    errors: int = 0
    malformed: int = 0
    head_ok: int = 0
    finish_s: float | None = None  # last first-answer, after the last publish
    latencies: list[float] = dataclasses.field(default_factory=list)
    daemon_cpu_ms: float | None = None
    fault: str = ""

    def evaluate(self, answers: Answers) -> None:
        firsts: list[float] = []
        with answers.lock:
            for h in self.holes:
                got = answers.got.get(h.key)
                if not got:
                    continue
                first_at, body, _ = got[0]
                firsts.append(first_at)
                fresh = sum(1 for _, _, dup in got if not dup)
                if fresh > 1:
                    self.duplicated += 1
                elif len(got) > 1:
                    self.redelivered += 1
                if body.get("Error") is True:
                    self.errors += 1
                elif not (isinstance(body.get("Value"), list) and len(body["Value"]) == 3):
                    self.malformed += 1
                if h.head_id is not None and body.get("HeadId") == h.head_id:
                    self.head_ok += 1
                if h.sent_trace is not None:
                    self.latencies.append(first_at - h.sent_trace)
        self.answered = len(firsts)
        self.missing = len(self.holes) - self.answered
        if firsts and not self.missing:  # with holes missing there is no "finished"
            self.finish_s = max(firsts) - self.last_publish

    def lat_ms(self, q: float) -> float | None:
        return 1000 * pct(self.latencies, q) if self.latencies else None


def run_phase(name: str, rate: float, seconds: float, factory: HoleFactory, pub: Publisher,
              answers: Answers, wait_s: float, quiet_s: float = 0.0,
              midway: Callable[[], None] | None = None,
              daemon_pid: Callable[[], int | None] | None = None) -> Phase:
    n = max(1, int(round(rate * seconds)))
    holes = factory.build(n)
    phase = Phase(name, rate, holes)
    pid = daemon_pid() if daemon_pid else None
    cpu0 = cpu_seconds(pid)
    t0, last, phase.lag_s = pub.stream(holes, rate, midway)
    phase.last_publish = holes[-1].sent_last or last
    phase.achieved = (n - 1) / (last - t0) if n > 1 and last > t0 else rate
    phase.failed_publish = pub.failed
    answers.wait(holes, phase.last_publish + wait_s, quiet_s)
    phase.unacked = pub.unacked(timeout_s=1.0)
    cpu1 = cpu_seconds(pid)
    if cpu0 is not None and cpu1 is not None and (daemon_pid and daemon_pid() == pid):
        phase.daemon_cpu_ms = 1000 * (cpu1 - cpu0) / n
    phase.evaluate(answers)
    return phase


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


HEADER = (f"{'phase':<22}{'holes':>6}{'pub/s':>8}{'answered':>9}{'missing':>8}{'dup':>5}"
          f"{'errors':>7}{'done+s':>8}{'p50ms':>8}{'p95ms':>8}{'p99ms':>8}{'cpu ms':>8}  note")


def row(p: Phase, note: str = "") -> str:
    return (f"{p.name:<22}{len(p.holes):>6}{p.achieved:>8.1f}{p.answered:>9}{p.missing:>8}"
            f"{p.duplicated:>5}{p.errors:>7}{fmt(p.finish_s, '.2f'):>8}"
            f"{fmt(p.lat_ms(0.5), '.0f'):>8}{fmt(p.lat_ms(0.95), '.0f'):>8}"
            f"{fmt(p.lat_ms(0.99), '.0f'):>8}{fmt(p.daemon_cpu_ms, '.1f'):>8}  {note}")


def sustained(p: Phase, drain_s: float) -> tuple[bool, str]:
    if p.missing:
        return False, f"{p.missing} unanswered"
    if p.finish_s is not None and p.finish_s > drain_s:
        return False, f"answers lagged {p.finish_s:.1f} s behind"
    if p.achieved < 0.95 * p.rate:
        return False, f"the publisher only managed {p.achieved:.0f}/s (load generator bound)"
    return True, "sustained"


def fault_note(p: Phase) -> str:
    extra = []
    if p.redelivered:
        extra.append(f"{p.redelivered} holes re-sent by the broker (DUP)")
    if p.unacked:
        extra.append(f"{p.unacked} publishes never PUBACKed")
    if p.failed_publish:
        extra.append(f"{p.failed_publish} publish errors")
    return "; ".join([p.fault, *extra])


def answering(p: Phase, daemon: Daemon | None) -> bool:
    """False (after saying why) when a phase got no answer at all: the daemon has stopped
    answering, and the phases after it would only wait out their timeouts."""
    if p.answered or not p.holes:
        return True
    print(f"\n{p.name}: not one of {len(p.holes)} holes was answered: the daemon stopped "
          "answering; the remaining phases are skipped.")
    if daemon is not None:
        try:
            r = daemon.get("/mqtt")
            print(f"GET /mqtt -> {r.status_code}: {r.text[:800]}")
        except httpx.HTTPError as exc:
            print(f"GET /mqtt failed: {type(exc).__name__} {exc}")
        print(f"--- daemon log (tail; whole log {daemon.log_path}) ---\n{daemon.log_tail(20)}\n")
    return False


def warm_up(factory: HoleFactory, pub: Publisher, answers: Answers, timeout_s: float,
            daemon: Daemon | None, broker: Mosquitto) -> list[Hole]:
    """One hole per tool must come back, or nothing that follows means anything."""
    holes = factory.build(len(factory.tools))
    pub.stream(holes, rate=10)
    answers.wait(holes, time.monotonic() + timeout_s)
    n = answers.answered(holes)
    if n == len(holes):
        return holes
    status = ""
    if daemon is not None:
        try:
            r = daemon.get("/mqtt")
            status = f"GET /mqtt -> {r.status_code}: {r.text[:800]}"
        except httpx.HTTPError as exc:
            status = f"GET /mqtt failed: {exc}"
    lines = [f"only {n} of {len(holes)} warm-up holes were answered on {answers.topic} "
             f"within {timeout_s:.0f} s.",
             "Is the daemon's MQTT bridge running (appliance serve --mqtt), subscribed to "
             f"{factory.root}/+/+/ResultManagement[/Trace] and .../AssetManagement/Heads, and "
             "publishing KeyPoints at the contract's topic?"]
    if status:
        lines.append(status)
    if daemon is not None:
        lines += ["--- daemon log (tail) ---", daemon.log_tail()]
    lines += ["--- broker log (tail) ---", broker.log_tail(15)]
    raise SystemExit("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rates", default="25,50,100,150,200",
                   help="holes/s for the rising-rate phase, comma separated")
    p.add_argument("--seconds", type=float, default=4.0, help="seconds per rate")
    p.add_argument("--drain", type=float, default=2.0,
                   help="a rate is sustained when every answer is in this many seconds after "
                        "the last publish")
    p.add_argument("--grace", type=float, default=15.0,
                   help="seconds to wait for late answers before counting a hole missing")
    p.add_argument("--keep-going", action="store_true",
                   help="try higher rates after one was not sustained")
    p.add_argument("--latency-rate", type=float, default=50.0)
    p.add_argument("--latency-seconds", type=float, default=10.0)
    p.add_argument("--fault-rate", type=float, default=50.0)
    p.add_argument("--fault-seconds", type=float, default=10.0,
                   help="length of each fault stream; the fault strikes half-way")
    p.add_argument("--settle", type=float, default=120.0,
                   help="seconds after a fault stream for every hole to be answered")
    p.add_argument("--quiet", type=float, default=3.0,
                   help="seconds to keep listening for duplicates once all are answered")
    p.add_argument("--first-answer-timeout", type=float, default=90.0)
    p.add_argument("--tools", type=int, default=4)
    p.add_argument("--pool", type=int, default=40, help="distinct source logs to cycle")
    p.add_argument("--no-heads", action="store_true",
                   help="publish result + trace only (the daemon then waits heads_wait_s)")
    p.add_argument("--root", default="OPCPUBSUB")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--skip-rates", action="store_true")
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument("--skip-kill", action="store_true")
    p.add_argument("--skip-broker-restart", action="store_true")
    p.add_argument("--fake-daemon", action="store_true",
                   help="answer from a trivial in-process responder (the harness's ceiling)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, home)")
    args = p.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r.strip()]

    if mosquitto_path() is None:
        raise SystemExit("mosquitto is not installed (apt-get install mosquitto)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-mqtt-"))
    try:
        run(args, rates, tmp)
    finally:
        if args.keep:
            print(f"kept {tmp} (broker and daemon logs, home)")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, rates: list[float], tmp: Path) -> None:
    sources, where = load_sources(args.pool, args.seed)
    factory = HoleFactory(sources, args.tools, args.root, heads=not args.no_heads,
                          seed=args.seed)
    sample = factory.build(8)
    print(f"holes from {where}: median {statistics.median(len(t) for t in sources):.0f} "
          f"samples, ~{statistics.mean(h.size for h in sample) / 1024:.0f} KB and "
          f"{len(sample[0].messages)} messages per hole, {args.tools} tools")

    # mosquitto is single-threaded and an autosave rewrites the whole database, including
    # the backlog queued for a killed daemon: saving every second would stall the broker in
    # the very phases that measure recovery. A graceful restart saves on exit anyway.
    broker = Mosquitto(workdir=tmp / "broker", autosave_interval_s=60).start()
    daemon: Daemon | None = None
    fake: FakeDaemon | None = None
    pub: Publisher | None = None
    answers: Answers | None = None
    try:
        # the reader's persistent session exists before anything can be answered
        answers = Answers(broker, args.root)
        if args.fake_daemon:
            fake = FakeDaemon(broker, args.root, heads=not args.no_heads)
            print(f"broker {broker.url}; FAKE daemon (in-process responder)")
        else:
            daemon = Daemon(tmp / "home", broker.url, tmp / "daemon.log", args.root)
            took = daemon.start()
            print(f"broker {broker.url}; daemon {daemon.url} up in {took:.1f} s "
                  f"(log {daemon.log_path})")
        pub = Publisher(broker)
        warm = warm_up(factory, pub, answers, args.first_answer_timeout, daemon, broker)

        def daemon_pid() -> int | None:
            return daemon.pid if daemon is not None else None

        phases: list[Phase] = []
        best: float | None = None
        alive = True
        print()
        print(HEADER, flush=True)
        if not args.skip_rates:
            for rate in rates:
                ph = run_phase(f"rate {rate:g}/s", rate, args.seconds, factory, pub, answers,
                               wait_s=max(args.drain, args.grace), daemon_pid=daemon_pid)
                ok, why = sustained(ph, args.drain)
                print(row(ph, why), flush=True)
                phases.append(ph)
                alive = answering(ph, daemon)
                if not alive:
                    break
                if ok:
                    best = rate if best is None else max(best, rate)
                elif not args.keep_going:
                    break
                # let a backlog drain before the next rate, so it is measured on its own
                answers.wait(ph.holes, time.monotonic() + args.grace)

        latency: Phase | None = None
        if not args.skip_latency and alive:
            latency = run_phase(f"latency {args.latency_rate:g}/s", args.latency_rate,
                                args.latency_seconds, factory, pub, answers,
                                wait_s=max(args.drain, args.grace), daemon_pid=daemon_pid)
            print(row(latency, "trace published -> KeyPoints received"), flush=True)
            alive = answering(latency, daemon)

        kill: Phase | None = None
        if not args.skip_kill and daemon is not None and alive:
            d = daemon
            outage: dict[str, float] = {}

            def kill_and_restart() -> None:
                t = time.monotonic()
                d.kill()
                try:
                    outage["restart_s"] = d.start()
                except SystemExit as exc:  # a thread would swallow it silently
                    print(f"\nthe daemon did not restart after kill -9: {exc}", flush=True)
                    return
                outage["down_s"] = time.monotonic() - t

            kill = run_phase("kill -9 daemon", args.fault_rate, args.fault_seconds, factory,
                             pub, answers, wait_s=args.settle, quiet_s=args.quiet,
                             midway=kill_and_restart)
            kill.fault = (f"daemon down {outage['down_s']:.1f} s" if "down_s" in outage
                          else "the daemon did not come back")
            print(row(kill, fault_note(kill)), flush=True)
            alive = answering(kill, daemon)
        elif not args.skip_kill and alive:
            print(f"{'kill -9 daemon':<22}skipped: no daemon process with --fake-daemon")

        restart: Phase | None = None
        if not args.skip_broker_restart and alive:
            bouts: dict[str, float] = {}

            def restart_broker() -> None:
                t = time.monotonic()
                broker.restart()
                bouts["down_s"] = time.monotonic() - t

            restart = run_phase("broker restart", args.fault_rate, args.fault_seconds, factory,
                                pub, answers, wait_s=args.settle, quiet_s=args.quiet,
                                midway=restart_broker)
            restart.fault = f"broker down {bouts.get('down_s', float('nan')):.1f} s"
            print(row(restart, fault_note(restart)), flush=True)

        print("\ncolumns: pub/s achieved publish rate; done+s last first-answer after the last "
              "publish; p50/p95/p99 trace published -> KeyPoints received; cpu ms daemon CPU "
              "per hole; dup holes the daemon answered more than once (broker re-sends apart)")
        summary(args, warm, phases, best, latency, kill, restart, answers, daemon)
    finally:
        for closer in (pub, answers, fake):
            if closer is not None:
                closer.close()
        if daemon is not None:
            daemon.stop()
        broker.close()


def summary(args: argparse.Namespace, warm: list[Hole], phases: list[Phase],
            best: float | None, latency: Phase | None, kill: Phase | None,
            restart: Phase | None, answers: Answers, daemon: Daemon | None) -> None:
    sent = {h.key for h in warm}
    sent |= {h.key for ph in phases + [p for p in (latency, kill, restart) if p]
             for h in ph.holes}
    with answers.lock:
        stray = sum(len(v) for k, v in answers.got.items() if k not in sent)
        dup_total = sum(1 for v in answers.got.values()
                        if sum(1 for _, _, dup in v if not dup) > 1)
        unreadable = answers.unreadable
    heads_sent = sum(1 for ph in phases + [p for p in (latency,) if p] for h in ph.holes
                     if h.head_id is not None)
    heads_ok = sum(ph.head_ok for ph in phases + [p for p in (latency,) if p])
    print(f"\nhighest sustained rate: {fmt(best, 'g')} holes/s "
          f"({fmt(best * (2 if args.no_heads else 3) if best else None, 'g')} messages/s)")
    if heads_sent:
        print(f"HeadId echoed from the heads message: {heads_ok}/{heads_sent} holes")
    print(f"answers for holes never sent: {stray}; unreadable answers: {unreadable}; "
          f"holes the daemon answered more than once over the whole run: {dup_total}")
    verdict: list[tuple[str, bool | None]] = [
        (">= 100 holes/s sustained", None if args.skip_rates else (best or 0) >= 100),
        ("latency p99 <= 500 ms at 50 holes/s",
         None if latency is None else (latency.lat_ms(0.99) or 1e9) <= 500
         and latency.missing == 0),
        ("kill -9: every hole answered exactly once",
         None if kill is None else kill.missing == 0 and kill.duplicated == 0),
        ("broker restart: every hole answered exactly once",
         None if restart is None else restart.missing == 0 and restart.duplicated == 0),
    ]
    for what, ok in verdict:
        print(f"  {'skip' if ok is None else 'PASS' if ok else 'MISS'}  {what}")
    if daemon is not None:
        try:
            r = daemon.get("/mqtt")
        except httpx.HTTPError:
            return
        if r.status_code == 200:
            print("\nGET /mqtt:")
            print(json.dumps(r.json(), indent=2)[:4000])


if __name__ == "__main__":
    main()
