"""Micro-batching of concurrent estimate requests.

Under load, many request threads each want one hole estimated; the ONNX members are far
cheaper per hole on a batch than one call per hole. Request threads queue their trace and
wait; one worker takes whatever is queued (up to max_batch) and estimates it in one call.
With a single request in flight nothing waits: the batch is just that hole.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from appliance.points import DepthEstimate
from appliance.trace import Trace

_STOP = object()


class EstimateBatcher:
    def __init__(self, estimate_many: Callable[[Sequence[Trace]], list[DepthEstimate]],
                 max_batch: int = 16) -> None:
        self._estimate_many = estimate_many
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="estimate-batcher", daemon=True)
        self._closed = False
        self.batches = 0  # how many calls were made, for tests and benchmarks
        self._thread.start()

    def estimate(self, trace: Trace, timeout: float | None = 120.0) -> DepthEstimate:
        if self._closed:
            raise RuntimeError("the estimator is shutting down")
        fut: Future[DepthEstimate] = Future()
        self._queue.put((trace, fut))
        return fut.result(timeout=timeout)

    def close(self) -> None:
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout=10)

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            items = [first]
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
            traces = [t for t, _ in items]  # type: ignore[misc]
            futures = [f for _, f in items]  # type: ignore[misc]
            try:
                results = self._estimate_many(traces)
                self.batches += 1
                for fut, res in zip(futures, results, strict=True):
                    fut.set_result(res)
            except BaseException as exc:  # every waiter must hear of it, never hang
                for fut in futures:
                    if not fut.done():
                        fut.set_exception(exc)
            if stop:
                return
