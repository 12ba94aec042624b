"""The daemon's link to the rig's MQTT broker: receive, store, pair, estimate, publish.

Guarantees (mqtt-contract.md; abyss lost holes on each of these):
- QoS 1 on a persistent session with a client id of this home's own: the broker keeps what
  arrives while the daemon is down, and two appliances never knock each other off.
- A message is acknowledged (PUBACK) only after its row is committed to the store, so a
  kill -9 at any moment loses nothing; a redelivered message is recognised by its digest.
- A hole's messages pair on toolbox/tool + result id + SourceTimestamp, never on a time
  window; unmatched ones wait in the store (not in memory) and expire by arrival time.
- A paired hole, its answer owed (bus_holes) and its messages' settlement are one
  transaction; the answer is marked sent only on the broker's PUBACK, and what is owed at
  start is published then. Failures are published with "Error": true, never only logged.

Three threads: paho's network thread only queues what arrives and collects acknowledgements;
the worker stores messages in batches (one transaction per batch) and pairs them; the
answering thread estimates the stored holes (through the daemon's batched model workers) and
publishes, so storing the next batch overlaps estimating the last.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import signal
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from appliance.bus.messages import Classified, HoleKey, classify, incoming, subscriptions
from appliance.bus.payloads import Answer, messages
from appliance.config import MqttConfig, parse_broker_url
from appliance.errors import IngestError, ValidationError
from appliance.ingest.mqtt import HoleMessages, joined_trace
from appliance.monitor import DrillDrift
from appliance.records import BusStatus
from appliance.services.drift import NewHole
from appliance.services.holes import HoleService
from appliance.store import Store
from appliance.store.bus import BusHole, InboxRow, PairToStore, Settlement, WaitingMessage
from appliance.trace import Trace

log = logging.getLogger("appliance.bus")
# Fault injection for the crash tests: the daemon SIGKILLs itself at this step of a hole's
# walk (receive, stored, acked, estimated, published). Unset in production.
KILL_AT = os.environ.get("APPLIANCE_BUS_KILL_AT")
BATCH = 256  # messages stored per transaction at most
ANSWER_BATCH = 64  # holes taken off the answering queue in one go at most
ANSWER_CHUNK = 16  # holes estimated (two model batches, side by side) before they are published
TICK_S = 0.05
LINGER_S = 0.03
# after a restart: how long the echoes of earlier answers may keep coming (quiet), at most
ECHO_QUIET_S = 1.0
ECHO_WAIT_S = 30.0  # the worker's longest sleep: heads waits and acknowledgements are this fine
HOUSEKEEPING_S = 60.0  # expiry and pruning of settled messages


def _kill_point(step: str) -> None:
    if KILL_AT == step:
        if step == "published":
            time.sleep(0.5)  # the answers reach the broker; their acknowledgement is not stored
        os.kill(os.getpid(), signal.SIGKILL)


def client_id_for(home: Path) -> str:
    """Stable per home, different between homes (two appliances on one broker)."""
    digest = hashlib.sha256(str(Path(home).resolve()).encode()).hexdigest()[:12]
    return f"appliance-{digest}"


@dataclass
class _Pending:
    """A waiting message in memory (its row is in the store)."""

    row: WaitingMessage
    parsed: Classified | None  # None after a restart until its payload is read again
    arrived: float  # monotonic, for the heads wait

    @property
    def key(self) -> HoleKey:
        r = self.row
        return HoleKey(r.toolbox, r.tool, r.result_id, r.stamp)


class MqttBridge:
    def __init__(self, config: MqttConfig, home: Path, store: Store, holes: HoleService
                 ) -> None:
        if config.url is None:
            raise ValidationError("the MQTT bridge needs [mqtt] url or --mqtt")
        self.config = config
        self.address = parse_broker_url(config.url)
        self.client_id = config.client_id or client_id_for(home)
        self._store = store
        self._holes = holes
        self._inbox: queue.SimpleQueue[tuple[int, int, int, str, bytes]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._generation = 0  # bumps on every connection: mids of an old one are not acked
        self._connected = False
        self._connected_since: datetime | None = None
        self._last_message: datetime | None = None
        self._reconnects = 0
        self._counts: Counter[str] = Counter()
        self._pending: dict[str, _Pending] = {}  # digest -> waiting message
        # publish mid -> hole key, hole key -> publishes not yet acknowledged; under _pub_lock
        # (never taken in a paho callback: those run holding paho's own mutex)
        self._sent: dict[int, str] = {}
        self._owed: dict[str, int] = {}
        self._pub_lock = threading.Lock()
        # filled by paho's network thread while it holds its own mutex: a deque, not our lock,
        # or the worker (holding ours, waiting in publish for paho's) deadlocks with it
        self._acked: deque[int] = deque()
        self._retry: list[tuple[int, int, int, str, bytes]] = []  # a batch whose store failed
        # Our own appliance payloads, echoed back by the broker (we subscribe to them): proof
        # that an answer reached the broker even when the daemon died before it could record
        # the PUBACK, so that a restart does not answer the hole a second time.
        self._echo_filter = f"{config.root}/+/+/{config.appliance_suffix}"
        self._echoes: deque[tuple[int, int, int, str, bytes]] = deque()
        self._echo_count = 0
        self._recorded = _Recent()  # answers recorded as published (their echoes need nothing)
        self._retry_published: list[str] = []
        self._retry_echoes: list[tuple[int, int, int]] = []
        self._owed_at_start: list[BusHole] = []
        self._first_connect = threading.Event()
        # what the store holds, mirrored in memory so that a batch needs no table scan to tell
        # a redelivery or a re-sent hole; past MEMORY_LIMIT entries the store is asked again
        self._digests = _Recent()
        self._answered = _Recent()
        self._heads_check: set[str] = set()  # heads digests to look up among answered holes
        # tools seen sending heads messages: only their holes wait for one (for HeadId)
        self._heads_tools: set[tuple[str, str]] = set()
        self._client = self._make_client()
        # stored holes (with their traces, None for a stored one to read back) to answer: the
        # answering thread estimates and publishes while the worker stores the next batch
        self._to_answer: queue.SimpleQueue[list[tuple[BusHole, Trace | None]]] = \
            queue.SimpleQueue()
        # answered holes for the drift watch, on a thread of its own: reading a group's
        # plateaus held the answering thread ~1-2 ms a hole, and the next group waited
        self._to_watch: queue.SimpleQueue[list[NewHole] | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._run, name="mqtt-bus", daemon=True)
        self._answerer = threading.Thread(target=self._answer_loop, name="mqtt-answer",
                                          daemon=True)
        self._watcher = threading.Thread(target=self._watch_loop, name="mqtt-drift-watch",
                                         daemon=True)

    # -- life cycle ----------------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                        clean_session=False, protocol=mqtt.MQTTv311, manual_ack=True)
        if self.config.username is not None:
            c.username_pw_set(self.config.username, self.config.password)
        if self.address.tls:
            c.tls_set(ca_certs=self.config.ca_file, certfile=self.config.cert_file,
                      keyfile=self.config.key_file, cert_reqs=ssl.CERT_REQUIRED)
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)  # answers queue while disconnected; never dropped
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        return c

    def start(self) -> None:
        digests, keys = self._store.bus_seen()
        self._digests.load(digests)
        self._answered.load(keys)
        for row in self._store.bus_waiting():
            self._pending[row.digest] = _Pending(row, None, time.monotonic())
            if row.kind == "heads":
                self._heads_check.add(row.digest)
                self._heads_tools.add((row.toolbox, row.tool))
        self._owed_at_start = self._store.bus_unpublished()
        self._worker.start()
        self._answerer.start()
        self._watcher.start()
        # connect_async + loop_start: a broker that is down at start is retried with back-off
        # instead of stopping the daemon
        self._client.connect_async(self.address.host, self.address.port, keepalive=30)
        self._client.loop_start()
        log.info("MQTT: %s as %s, subscribing to %s", self.config.url, self.client_id,
                 ", ".join(subscriptions(self.config.root)))

    def close(self) -> None:
        self._stop.set()
        self._worker.join(timeout=30)
        self._answerer.join(timeout=30)
        self._to_watch.put(None)  # after the answerer: what it answered is watched first
        self._watcher.join(timeout=30)
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()

    # -- paho callbacks (network thread: no store work here) ----------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT: %s refused the connection: %s", self.config.url, reason)
            return
        with self._lock:
            self._generation += 1
            self._connected_since = datetime.now(UTC)
        client.subscribe([(t, 1) for t in subscriptions(self.config.root)]
                         + [(self._echo_filter, 1)])
        log.info("MQTT: connected to %s (session present: %s); subscribing", self.config.url,
                 getattr(flags, "session_present", None))

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any,
                      properties: Any) -> None:
        # "connected" means receiving: until the broker confirms the subscriptions, what a
        # unit publishes is not yet kept for this session
        refused = [r for r in reasons if getattr(r, "is_failure", False)]
        if refused:
            log.warning("MQTT: %s refused %d subscription(s): %s", self.config.url,
                        len(refused), refused)
        with self._lock:
            self._connected = True
        self._first_connect.set()
        log.info("MQTT: connected and subscribed to %s", self.config.url)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        with self._lock:
            was = self._connected
            self._connected = False
            if was and not self._stop.is_set():
                self._reconnects += 1
        if was and not self._stop.is_set():
            log.warning("MQTT: lost %s (%s); reconnecting", self.config.url, reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        item = (self._generation, msg.mid, msg.qos, msg.topic, bytes(msg.payload))
        if msg.topic.endswith("/" + self.config.appliance_suffix):
            self._echoes.append(item)
        else:
            self._inbox.put(item)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:
        self._acked.append(mid)

    # -- the worker -----------------------------------------------------------------------------
    def _run(self) -> None:
        last_housekeeping = 0.0
        while not self._stop.is_set():
            try:
                self._step()
                if time.monotonic() - last_housekeeping > HOUSEKEEPING_S:
                    last_housekeeping = time.monotonic()
                    self._housekeeping()
            except Exception:  # a bug or a full disk: log, wait, retry; never lose the thread
                log.exception("MQTT bus worker failed; retrying")
                self._stop.wait(1.0)

    def _answer_loop(self) -> None:
        """Estimate, store the estimates, publish; and record the broker's acknowledgements.
        A hole whose answer fails here stays owed (unpublished) and is answered at start."""
        if self._owed_at_start:
            self._answer_owed()
        while not self._stop.is_set():
            try:
                try:
                    group = self._to_answer.get(timeout=TICK_S)
                except queue.Empty:
                    continue
                # all that waits, in one go: one model batch and one commit for many holes
                # keeps up where one per worker step fell behind at 50 holes/s
                while len(group) < ANSWER_BATCH:
                    try:
                        group += self._to_answer.get_nowait()
                    except queue.Empty:
                        break
                self._answer(group)
            except Exception:
                log.exception("MQTT answering failed; retrying")
                self._stop.wait(1.0)

    def _answer_owed(self) -> None:
        """Answers owed from before a restart. The echoes of those the broker already had
        come back on our persistent session first (they were not acknowledged); only what
        is still owed after they stop coming is published."""
        if not self._first_connect.wait(timeout=ECHO_WAIT_S) or self._stop.is_set():
            return  # no broker yet: they stay owed until the next start
        quiet_since = time.monotonic()
        deadline = quiet_since + ECHO_WAIT_S
        seen = self._echo_count
        while time.monotonic() - quiet_since < ECHO_QUIET_S and time.monotonic() < deadline:
            self._stop.wait(TICK_S)
            if self._echo_count != seen:  # the worker recorded more of them
                seen, quiet_since = self._echo_count, time.monotonic()
        keys = [h.hole_key for h in self._owed_at_start]
        still = {h.hole_key for h in self._store.bus_unpublished_of(keys)}
        owed = [h for h in self._owed_at_start if h.hole_key in still]
        log.info("MQTT: %d answer(s) owed from before the restart; %d reached the broker "
                 "already; publishing the rest", len(keys), len(keys) - len(owed))
        self._answer([(h, None) for h in owed])

    def _answer(self, group: list[tuple[BusHole, Trace | None]]) -> None:
        """Estimate and publish, a chunk at a time: the first holes of a long queue are
        answered while the later ones are still being estimated. The drift watch reads them
        on its own thread once they are answered."""
        for h, _ in group:
            if h.hole_id is None or h.error is not None:
                self._publish(Answer(h, None, h.error or "the hole was not stored"))
        fine = [(h, h.hole_id, t if t is not None else self._store.get_trace(h.hole_id))
                for h, t in group if h.hole_id is not None and h.error is None]
        for i in range(0, len(fine), ANSWER_CHUNK):
            chunk = fine[i:i + ANSWER_CHUNK]
            estimates, fresh = self._holes.estimate_stored([(hid, t) for _, hid, t in chunk])
            _kill_point("estimated")
            for (h, _, _), est in zip(chunk, estimates, strict=True):
                self._publish(Answer(h, est, None))
            _kill_point("published")
            if fresh:
                self._to_watch.put(fresh)

    def _watch_loop(self) -> None:
        while (holes := self._to_watch.get()) is not None:
            self._holes.observe(holes)  # never raises: a failure of the watch is logged

    def _take_batch(self) -> list[tuple[int, int, int, str, bytes]]:
        if self._retry:
            batch, self._retry = self._retry, []
            return batch
        try:
            first = self._inbox.get(timeout=TICK_S)
        except queue.Empty:
            return []
        batch = [first]
        # linger a moment for the rest of a burst: a step's fixed cost (a dozen statements
        # and a commit) shared by several holes left the box the CPU to keep latency down
        until = time.monotonic() + LINGER_S
        while len(batch) < BATCH:
            left = until - time.monotonic()
            try:
                batch.append(self._inbox.get(timeout=left) if left > 0
                             else self._inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def _step(self) -> int:
        """One batch: read the messages, pair what can pair, and store the new messages, the
        holes and their owed answers in one transaction; only then acknowledge the batch to
        the broker. A message that pairs at once is stored without its payload (its hole
        holds the data), so most trace messages are written once, as samples."""
        published, echoes = self._published()
        batch = self._take_batch()
        try:
            return self._step_with(batch, published, echoes)
        except BaseException:
            # nothing of it was stored or acknowledged: take it again next time
            self._retry = batch
            self._unrecord(published, echoes)
            raise

    def _step_with(self, batch: list[tuple[int, int, int, str, bytes]], published: list[str],
                   echoes: list[tuple[int, int, int]]) -> int:
        if not batch and not self._pending:
            if published:
                self._store.bus_mark_published(published)
            self._recorded_published(published, echoes)
            return 0
        rows: list[InboxRow] = []
        parsed: list[Classified | None] = []
        c: Classified | None  # a message's reading; None: quarantined
        for _, _, _, topic, payload in batch:
            msg = incoming(topic, payload)
            try:
                c = classify(msg, self.config.root)
            except IngestError as exc:
                rows.append(InboxRow(topic, msg.digest, payload, "quarantined", reason=str(exc)))
                parsed.append(None)
                continue
            k = c.key
            rows.append(InboxRow(topic, msg.digest, payload, "waiting", c.kind, k.toolbox,
                                 k.tool, k.result_id, k.stamp, c.machine_id, c.head_id))
            parsed.append(c)
        _kill_point("receive")
        seen = self._digests.known([r.digest for r in rows], self._store.bus_known)
        fresh: list[tuple[InboxRow, Classified | None]] = []
        duplicates = 0
        for row, c in zip(rows, parsed, strict=True):
            if row.digest in seen:  # redelivered, or re-sent byte for byte
                duplicates += 1
                continue
            seen.add(row.digest)
            fresh.append((row, c))
        now = datetime.now(UTC)
        added: list[str] = []
        for row, c in fresh:
            if c is not None:
                waiting = WaitingMessage(0, now.replace(tzinfo=None), row.digest, row.topic,
                                         c.kind, c.key.toolbox, c.key.tool, c.key.result_id,
                                         c.key.stamp, c.machine_id, c.head_id)
                self._pending[row.digest] = _Pending(waiting, c, time.monotonic())
                added.append(row.digest)
                if c.kind == "heads":
                    self._heads_tools.add((c.key.toolbox, c.key.tool))
        ready = self._ready()
        for trio in ready:
            for p in trio:
                if p is not None:
                    self._pending.pop(p.row.digest, None)
        try:
            pairs, settled, traces = self._plan(ready)
            fresh_digests = {row.digest for row, _ in fresh}
            inbox = [replace(row, state=settled[row.digest].state,
                             hole_key=settled[row.digest].hole_key,
                             reason=settled[row.digest].reason)
                     if row.digest in settled else row for row, _ in fresh]
            older = [s for d, s in settled.items() if d not in fresh_digests]
            stored = self._store.bus_commit(inbox, pairs, older, published)
        except BaseException:
            # nothing of this batch is stored: undo the memory (the caller retries the batch)
            for d in added:
                self._pending.pop(d, None)
            for trio in ready:
                for p in trio:
                    if p is not None and p.row.digest not in added:
                        self._pending[p.row.digest] = p
            raise
        _kill_point("stored")
        self._recorded_published(published, echoes)
        self._digests.add(row.digest for row, _ in fresh)
        self._answered.add(h.hole_key for h in stored)
        for generation, mid, qos, _, _ in batch:
            # stored (or already stored): only now may the broker forget it
            if generation == self._generation:
                self._client.ack(mid, qos)
        _kill_point("acked")
        self._counts["duplicate_since_start"] += duplicates
        self._counts["received_since_start"] += len(fresh)
        for row, c in fresh:
            if c is None:
                log.warning("MQTT: quarantined a message on %s: %s", row.topic, row.reason)
            elif c.kind == "heads" and row.digest in self._pending:
                self._heads_check.add(row.digest)
        if batch:
            with self._lock:
                self._last_message = now
        if stored:
            self._to_answer.put([(h, traces.get(h.hole_key)) for h in stored])
        self._late_heads()
        return len(batch)

    def _parsed(self, p: _Pending, payloads: dict[str, bytes]) -> Classified | None:
        if p.parsed is None and p.row.digest in payloads:
            try:
                p.parsed = classify(incoming(p.row.topic, payloads[p.row.digest]),
                                    self.config.root)
            except IngestError:
                return None
        return p.parsed

    def _groups(self) -> dict[tuple[str, str, str], list[_Pending]]:
        groups: dict[tuple[str, str, str], list[_Pending]] = {}
        for p in self._pending.values():
            groups.setdefault((p.row.toolbox, p.row.tool, p.row.result_id), []).append(p)
        return groups

    def _ready(self) -> list[tuple[_Pending, _Pending, _Pending | None]]:
        """Result + trace pairs (with their heads, when it came) that can be answered now."""
        ready: list[tuple[_Pending, _Pending, _Pending | None]] = []
        now = time.monotonic()
        for members in self._groups().values():
            results = [p for p in members if p.row.kind == "result"]
            traces = [p for p in members if p.row.kind == "trace"]
            heads = [p for p in members if p.row.kind == "heads"]
            for result in results:
                trace = next((t for t in traces if t.key.matches(result.key)), None)
                if trace is None:
                    continue
                head = next((h for h in heads if h.key.matches(result.key)), None)
                if head is None and (result.row.toolbox, result.row.tool) in self._heads_tools \
                        and now - max(result.arrived, trace.arrived) < self.config.heads_wait_s:
                    continue
                traces.remove(trace)
                if head is not None:
                    heads.remove(head)
                ready.append((result, trace, head))
        return ready

    def _late_heads(self) -> None:
        """A heads message whose hole was answered before it came: recorded on that hole."""
        if not self._heads_check:
            return
        groups = self._groups()
        for digest in list(self._heads_check):
            self._heads_check.discard(digest)
            p = self._pending.get(digest)
            if p is None:
                continue
            if any(m.row.kind == "result" for m in
                   groups.get((p.row.toolbox, p.row.tool, p.row.result_id), [])):
                continue  # its result is still here: it pairs with it
            for hole in self._store.bus_holes_for(p.row.toolbox, p.row.tool, p.row.result_id):
                if hole.stamp is None or p.row.stamp is None or hole.stamp == p.row.stamp:
                    self._store.bus_attach_heads(digest, hole.hole_key, p.row.head_id)
                    self._pending.pop(digest, None)
                    self._counts["late_heads_since_start"] += 1
                    break

    def _plan(self, ready: list[tuple[_Pending, _Pending, _Pending | None]]
              ) -> tuple[list[PairToStore], dict[str, Settlement], dict[str, Trace]]:
        """Each ready pair's hole (its trace built, or the error that keeps it from being
        estimated), and what becomes of each of its messages."""
        pairs: list[PairToStore] = []
        settled: dict[str, Settlement] = {}
        traces: dict[str, Trace] = {}
        if not ready:
            return pairs, settled, traces
        lazy = [p.row.digest for trio in ready for p in trio if p is not None and p.parsed is None]
        payloads = self._store.bus_payloads(lazy) if lazy else {}
        keys = [_hole_key(result.key, trace.key) for result, trace, _ in ready]
        answered = self._answered.known(keys, lambda k: set(self._store.bus_holes(k)))
        planned: set[str] = set()
        for (result, trace, head), key in zip(ready, keys, strict=True):
            digests = tuple(p.row.digest for p in (result, trace, head) if p is not None)
            if key in answered or key in planned:
                # the controller re-sent a hole already answered (other bytes, same keys)
                settled.update({d: Settlement(d, "paired", key, "duplicate hole")
                                for d in digests})
                self._counts["duplicate_hole_since_start"] += 1
                continue
            planned.add(key)
            k = result.key
            hole = BusHole(key, k.toolbox, k.tool, k.result_id, k.stamp or trace.key.stamp,
                           result.row.machine_id, head.row.head_id if head else None, None, None)
            rc, tc = self._parsed(result, payloads), self._parsed(trace, payloads)
            hc = self._parsed(head, payloads) if head is not None else None
            try:
                if rc is None or tc is None:
                    raise IngestError(f"mqtt:{key}", "a message of the hole cannot be read "
                                                     "back from the store")
                built = joined_trace(HoleMessages(tc.message, rc.message,
                                                  [hc.message] if hc else []), f"mqtt:{key}")
                self._store.check_trace(built)
            except (IngestError, ValidationError) as exc:
                error = str(exc)
                pairs.append(PairToStore(replace(hole, error=error), digests, None, None))
                settled.update({d: Settlement(d, "quarantined", key, error) for d in digests})
                log.warning("MQTT: hole %s cannot be estimated: %s", key, exc)
                continue
            traces[key] = built
            group = built.meta.drill_serial or f"{k.toolbox}/{k.tool}"
            pairs.append(PairToStore(hole, digests, built, group))
            settled.update({d: Settlement(d, "paired", key, None) for d in digests})
        return pairs, settled, traces

    def _publish(self, answer: Answer) -> None:
        key = answer.hole.hole_key
        outgoing = messages(answer, self.config, self.client_id)
        with self._pub_lock:
            self._owed[key] = len(outgoing)
            for out in outgoing:
                info = self._client.publish(out.topic, out.payload, qos=1)
                self._sent[info.mid] = key
            self._counts["error_answers_since_start" if answer.error else
                         "answers_since_start"] += 1

    def _published(self) -> tuple[list[str], list[tuple[int, int, int]]]:
        """(hole keys now known to be at the broker and not yet recorded, echoes to
        acknowledge once they are). An answer is at the broker when every one of its
        publishes was acknowledged, or when its appliance payload came back to us."""
        keys: list[str] = []
        with self._pub_lock:
            while self._acked:
                # publish() returned (under the lock) before its mid is looked up here: a
                # mid not known is not one of our answers
                key = self._sent.pop(self._acked.popleft(), None)
                if key is None:
                    continue
                self._owed[key] -= 1
                if self._owed[key] <= 0:
                    del self._owed[key]
                    keys.append(key)
        echoes, self._retry_echoes = self._retry_echoes, []
        while self._echoes:
            generation, mid, qos, _, payload = self._echoes.popleft()
            echoes.append((generation, mid, qos))
            try:
                body = msgspec.json.decode(payload)
            except msgspec.DecodeError:
                continue
            if isinstance(body, dict) and body.get("ClientId") == self.client_id \
                    and isinstance(body.get("HoleKey"), str) \
                    and body["HoleKey"] not in self._recorded:
                keys.append(body["HoleKey"])
        if echoes:
            self._echo_count += len(echoes)
        keys, self._retry_published = self._retry_published + keys, []
        return [k for k in dict.fromkeys(keys) if k not in self._recorded], echoes

    def _unrecord(self, keys: list[str], echoes: list[tuple[int, int, int]]) -> None:
        """Keys whose commit failed: recorded (and their echoes acknowledged) with the next."""
        self._retry_published += keys
        self._retry_echoes += echoes

    def _recorded_published(self, keys: list[str], echoes: list[tuple[int, int, int]]
                            ) -> None:
        """After the keys' commit: remember them, and let the broker forget the echoes (an
        echo not acknowledged comes back after a crash, which is what a restart needs)."""
        self._recorded.add(keys)
        for generation, mid, qos in echoes:
            if generation == self._generation:
                self._client.ack(mid, qos)

    def _housekeeping(self) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        hours = self.config.unmatched_expiry_h
        reason = f"no partner message arrived within {hours:g} h of this one"
        expired = self._store.bus_expire(now - timedelta(hours=hours), reason)
        if expired:
            log.warning("MQTT: %d unmatched message(s) expired (quarantined)", len(expired))
        answers: list[PairToStore] = []
        for m in expired:
            self._pending.pop(m.digest, None)
            if m.kind == "result":  # the hole's owner is told it will not be estimated
                key = _hole_key(HoleKey(m.toolbox, m.tool, m.result_id, m.stamp), None)
                if not self._store.bus_holes([key]):
                    answers.append(PairToStore(BusHole(
                        key, m.toolbox, m.tool, m.result_id, m.stamp, m.machine_id, None, None,
                        f"no trace message arrived within {hours:g} h"), (), None, None))
        if answers:
            stored = self._store.bus_store_pairs(answers)
            self._answered.add(h.hole_key for h in stored)
            self._to_answer.put([(h, None) for h in stored])
        self._store.bus_prune(now - timedelta(hours=max(hours, 24.0)))

    def publish_alarm(self, drift: DrillDrift) -> None:
        """A drill went into drift alarm: told to the supervisory systems at QoS 1."""
        body = {"Drill": drift.drill, "State": drift.state, "Holes": drift.holes,
                "AlarmAtHole": drift.alarm_at_hole, "Since": drift.since,
                "Signals": [msgspec.structs.asdict(sig) for sig in drift.alarmed_signals],
                "ClientId": self.client_id}
        topic = f"{self.config.root}/{self.config.alarm_suffix}/{drift.drill}"
        self._client.publish(topic, json.dumps(body, allow_nan=False,
                                               default=str).encode(), qos=1)

    # -- status ---------------------------------------------------------------------------------
    def status(self) -> BusStatus:
        counts = self._store.bus_counts()
        with self._lock:
            connected, since = self._connected, self._connected_since
            last, reconnects = self._last_message, self._reconnects
            memory = dict(self._counts)
        if last is None and counts.last_received_at is not None:
            last = counts.last_received_at.replace(tzinfo=UTC)
        totals = {"paired_messages": counts.paired, "quarantined_messages": counts.quarantined,
                  "expired_messages": counts.expired, "holes": counts.holes,
                  "answers_published": counts.published, "error_answers": counts.errors,
                  **memory}
        return BusStatus(True, self.config.url, self.client_id, connected,
                         since.isoformat() if since else None,
                         last.isoformat() if last else None, counts.waiting,
                         counts.unpublished, reconnects, totals)


MEMORY_LIMIT = 1_000_000  # digests or hole keys kept in memory (~120 MB at most)


class _Recent:
    """A set mirrored from the store, exact while it holds everything the store does."""

    def __init__(self) -> None:
        self._items: dict[str, None] = {}  # insertion-ordered: the oldest go first
        self._complete = True

    def load(self, items: list[str]) -> None:
        self._items = dict.fromkeys(items[-MEMORY_LIMIT:])
        self._complete = len(items) <= MEMORY_LIMIT

    def add(self, items: Iterable[str]) -> None:
        for item in items:
            self._items[item] = None
        while len(self._items) > MEMORY_LIMIT:
            del self._items[next(iter(self._items))]
            self._complete = False

    def __contains__(self, item: str) -> bool:
        return item in self._items

    def known(self, items: list[str], ask_store: Callable[[list[str]], set[str]]) -> set[str]:
        if not items:
            return set()
        found = {i for i in items if i in self._items}
        if self._complete or len(found) == len(items):
            return found
        return found | ask_store([i for i in items if i not in found])


def _hole_key(result: HoleKey, trace: HoleKey | None) -> str:
    stamp = result.stamp or (trace.stamp if trace is not None else None)
    return HoleKey(result.toolbox, result.tool, result.result_id, stamp).text
