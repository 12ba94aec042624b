"""Micro-batching of concurrent estimate requests.

Under load, many requests each want one hole estimated; the ONNX members are far cheaper
per hole on a batch than one call per hole. Requests queue their trace (a thread waits on
`estimate`; the event loop awaits the future from `submit`, so no thread is held while the
model runs and every request in flight can join the next batch); one worker takes whatever
is queued (up to max_batch) and estimates it in one call. With a single request in flight
nothing waits: the batch is just that hole.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from appliance.engine.workers import Answer, Item
from appliance.points import DepthEstimate
from appliance.trace import Trace

_STOP = None  # what close() queues once per worker thread
_Job = tuple[Item, "Future[DepthEstimate]"]


def serving_workers() -> int:
    """Batches the daemon runs side by side: one per core (at least 2, so onnxruntime on one
    overlaps Python work on another), each with single-threaded sessions."""
    return min(4, max(2, os.cpu_count() or 1))


class EstimateBatcher:
    def __init__(self, estimate_many: Callable[[Sequence[Item]], Sequence[Answer]],
                 max_batch: int = 8, workers: int = 1) -> None:
        # several workers (see serving_workers): while one waits on onnxruntime (no GIL held)
        # another gathers and decodes its batch; small batches keep a request that just
        # missed one from waiting long for the next
        self._estimate_many = estimate_many
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"estimate-batcher-{i}",
                                          daemon=True) for i in range(workers)]
        self._closed = False
        self.batches = 0  # how many calls were made, for tests and benchmarks
        self._count_lock = threading.Lock()
        for t in self._threads:
            t.start()

    def estimate(self, trace: Trace, timeout: float | None = 120.0) -> DepthEstimate:
        return self.submit(trace).result(timeout=timeout)

    def submit(self, item: Item) -> Future[DepthEstimate]:
        """Queue one hole (a trace, or an upload to parse); the future is resolved by the
        worker thread, with the upload's error when it does not parse."""
        if self._closed:
            raise RuntimeError("the estimator is shutting down")
        fut: Future[DepthEstimate] = Future()
        self._queue.put((item, fut))
        return fut

    def close(self) -> None:
        self._closed = True
        for _ in self._threads:
            self._queue.put(_STOP)
        for t in self._threads:
            t.join(timeout=10)

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            items: list[_Job] = [first]
            stop = False
            while len(items) < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                items.append(nxt)
            holes = [t for t, _ in items]
            futures = [f for _, f in items]
            try:
                results = self._estimate_many(holes)
                with self._count_lock:
                    self.batches += 1
                for fut, res in zip(futures, results, strict=True):
                    if isinstance(res, BaseException):
                        fut.set_exception(res)
                    else:
                        fut.set_result(res)
            except BaseException as exc:  # every waiter must hear of it, never hang
                for fut in futures:
                    if not fut.done():
                        fut.set_exception(exc)
            if stop:
                return
