"""Estimates in worker processes: the daemon's model workers beyond one interpreter's lock.

Parsing an upload and the rules' reading of a hole are many small numpy and Python steps
that hold the interpreter lock; in one process the daemon's model threads took turns on it
and, measured on 2 cores, used 1.5 of them (benchmarks/api.py). Each worker process here
serves one of the daemon's batch threads: it gets a batch (stored traces, or uploads it
parses itself), answers it with its own copy of the model folder the batch names, and sends
back the estimates and the rules' readings (the drift watch reads the same holes next).

A worker holds no state that matters: it reads model folders, never the store. If one dies
or stops answering, the batch is answered in the daemon's own process (WorkerFailed) and the
worker is started again; when the daemon dies, its workers see their pipe close and exit.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from appliance.engine.ensemble import Engine
from appliance.engine.fallback import heuristic_estimate
from appliance.engine.holder import NO_MODEL_NOTE
from appliance.errors import ApplianceError
from appliance.estimators.heuristic import Reading, read_trace
from appliance.points import DepthEstimate
from appliance.trace import Trace

log = logging.getLogger("appliance.workers")

ANSWER_TIMEOUT_S = 120.0  # a batch of 8 takes ~0.1 s; past this the worker is taken as hung
START_TIMEOUT_S = 120.0  # importing numpy, pandas and onnxruntime on a busy box
ENGINES_KEPT = 2  # the active model and the one it replaced (requests in flight at a swap)


@dataclass(frozen=True)
class Upload:
    """Bytes a client sent to be estimated, parsed by the worker (the source is the name its
    errors give)."""

    data: bytes
    source: str


Item = Trace | Upload
# an upload that does not parse is answered with its error (IngestError names the source)
Answer = DepthEstimate | ApplianceError


class WorkerFailed(RuntimeError):
    """The worker process died or stopped answering; the batch was not answered."""


@dataclass(frozen=True)
class Batch:
    model_dir: str | None  # None: no active model, the rules answer
    items: tuple[Item, ...]


@dataclass(frozen=True)
class Answers:
    answers: list[Answer]
    readings: list[tuple[int, Reading | None]]  # (item index, the rules' reading) per trace


def answer_items(items: Sequence[Item],
                 estimate_many: Callable[[Sequence[Trace]], list[DepthEstimate]],
                 ) -> tuple[list[Answer], list[tuple[int, Trace]]]:
    """Uploads parsed (an upload that does not parse is answered with its error), every
    trace estimated in one call; also the (item index, trace) of each trace."""
    from appliance.ingest import parse_bytes

    answers: list[Answer | None] = [None] * len(items)
    traces: list[tuple[int, Trace]] = []
    for i, item in enumerate(items):
        if isinstance(item, Upload):
            try:
                traces.append((i, parse_bytes(item.data, item.source)))
            except ApplianceError as exc:
                answers[i] = exc
        else:
            traces.append((i, item))
    for (i, _), est in zip(traces, estimate_many([t for _, t in traces]), strict=True):
        answers[i] = est
    done = [a for a in answers if a is not None]
    if len(done) != len(answers):
        raise RuntimeError(f"{len(answers) - len(done)} of {len(answers)} items unanswered")
    return done, traces


def answer_batch(batch: Batch, engines: dict[str, Engine]) -> Answers:
    """What a worker does with a batch; `engines` are the model folders it has loaded."""
    if batch.model_dir is None:
        answers, traces = answer_items(
            batch.items, lambda ts: [heuristic_estimate(t, NO_MODEL_NOTE) for t in ts])
    else:
        engine = engines.get(batch.model_dir)
        if engine is None:
            engine = Engine.from_dir(batch.model_dir)
            while len(engines) >= ENGINES_KEPT:
                engines.pop(next(iter(engines)))
            engines[batch.model_dir] = engine
        answers, traces = answer_items(batch.items, engine.estimate_many)
    # read once already while estimating (remembered in this process): only looked up here
    readings = [(i, read_trace(t)) for i, t in traces if not isinstance(batch.items[i], Upload)]
    return Answers(answers, readings)


def _serve(conn: Connection) -> None:
    """A worker's life: answer batches until the pipe closes or None arrives."""
    from appliance.engine.sessions import set_default_threads

    set_default_threads(1)  # one worker per core already
    engines: dict[str, Engine] = {}
    conn.send("ready")
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):
            return  # the daemon is gone
        if batch is None:
            return
        try:
            conn.send(answer_batch(batch, engines))
        except Exception as exc:  # noqa: BLE001 - reported to the daemon, which falls back
            conn.send(RuntimeError(f"{type(exc).__name__}: {exc}"))


class EstimateProcess:
    """One worker process and the daemon's end of its pipe. One caller at a time."""

    def __init__(self, index: int) -> None:
        self.index = index
        ctx = multiprocessing.get_context("spawn")  # the daemon has threads: never fork it
        self._conn, child = ctx.Pipe()
        self._proc: BaseProcess = ctx.Process(target=_serve, args=(child,), daemon=True,
                                              name=f"estimate-worker-{index}")
        self._proc.start()
        child.close()
        self._started = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        if self._started:
            return
        if not self._conn.poll(timeout):
            raise WorkerFailed(f"estimate worker {self.index} did not start in {timeout:.0f} s")
        try:
            hello = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise WorkerFailed(f"estimate worker {self.index} exited while starting") from exc
        if hello != "ready":
            raise WorkerFailed(f"estimate worker {self.index} said {hello!r} on start")
        self._started = True

    def run(self, batch: Batch, timeout: float = ANSWER_TIMEOUT_S) -> Answers:
        try:
            self.wait_ready()
            self._conn.send(batch)
            if not self._conn.poll(timeout):
                raise WorkerFailed(f"estimate worker {self.index} gave no answer in "
                                   f"{timeout:.0f} s")
            reply = self._conn.recv()
        except (EOFError, OSError) as exc:  # a broken pipe included
            raise WorkerFailed(f"estimate worker {self.index} (pid {self.pid}) is gone "
                               f"(exit code {self._proc.exitcode})") from exc
        if isinstance(reply, Exception):
            raise WorkerFailed(f"estimate worker {self.index}: {reply}")
        if not isinstance(reply, Answers):
            raise WorkerFailed(f"estimate worker {self.index} sent a {type(reply).__name__}")
        return reply

    def close(self, timeout: float = 5.0) -> None:
        try:
            self._conn.send(None)
        except (OSError, ValueError):
            pass
        self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(timeout)
        self._conn.close()


class ProcessEstimator:
    """`workers` worker processes, each lent to one caller at a time (the batch threads).
    Each starts with its first batch: a daemon that is never asked for an estimate, or a
    test that never asks, starts none."""

    def __init__(self, workers: int) -> None:
        self._idle: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._procs: list[EstimateProcess | None] = [None] * workers
        self._lock = threading.Lock()
        self._closed = False
        self.restarts = 0
        for i in range(workers):
            self._idle.put(i)

    @property
    def workers(self) -> int:
        return len(self._procs)

    def pids(self) -> list[int]:
        """The workers started so far."""
        with self._lock:
            return [p.pid for p in self._procs if p is not None and p.pid is not None]

    def estimate(self, model_dir: Path | None, items: Sequence[Item]) -> Answers:
        """Answers in item order. Raises WorkerFailed (and replaces the worker) when the
        worker could not answer: the caller answers the batch itself."""
        slot = self._idle.get()
        try:
            with self._lock:
                if self._closed:
                    raise WorkerFailed("the estimate workers are shut down")
                proc = self._procs[slot]
                if proc is None:
                    try:
                        proc = self._procs[slot] = EstimateProcess(slot)
                    except (OSError, RuntimeError) as exc:  # no process could be made
                        raise WorkerFailed(f"estimate worker {slot} could not start "
                                           f"({exc})") from exc
            try:
                return proc.run(Batch(None if model_dir is None else str(model_dir),
                                      tuple(items)))
            except WorkerFailed:
                log.warning("estimate worker %d (pid %s) failed; another starts with the next"
                            " batch", slot, proc.pid)
                proc.close(timeout=1.0)
                with self._lock:
                    self._procs[slot] = None
                    self.restarts += 1
                raise
        finally:
            self._idle.put(slot)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            procs = [p for p in self._procs if p is not None]
        for proc in procs:
            proc.close()
