"""The folds of a run as Ray tasks: on this box (`local`) or on a Ray cluster (`auto`, an
address), each fold `appliance.train.train.train_fold` exactly as a local run calls it.

The dataset's tensors go into Ray's object store once and every task reads them from there;
epoch events come back through a Ray queue; each fold's weights are handed to the caller as
soon as its task finishes, so the caller checkpoints it and a killed run never retrains it.
Ray is the optional `cluster` extra: nothing here is imported unless `--ray` is given.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from appliance.errors import ApplianceError, UsageError, ValidationError
from appliance.train.devices import DeviceError

if TYPE_CHECKING:
    from appliance.train.train import EpochSink, FoldResult, Tensors, TrainOptions

INSTALL_HINT = "pip install -e '.[cluster]'"
POLL_S = 0.5  # how often the driver forwards epoch events while the folds train


class RayMissingError(UsageError):
    """--ray without Ray installed (a usage error: exit 2)."""


class FoldFailedError(ApplianceError):
    """A fold's Ray task raised: its message, not Ray's wrapper."""


def import_ray() -> ModuleType:
    try:
        # by name: a plain `import ray` is Any here (ray is not followed), this is ModuleType
        return importlib.import_module("ray")
    except ModuleNotFoundError:
        raise RayMissingError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}"
                              ) from None


def check_address(address: str) -> str:
    """local | auto | HOST:PORT | ray://HOST:PORT, refused before any work starts."""
    address = address.strip()
    if address in ("local", "auto") or address.startswith("ray://"):
        return address
    host, _, port = address.rpartition(":")
    if host and port.isdigit():
        return address
    raise ValidationError(f"--ray {address!r}: expected local, auto, HOST:PORT or "
                          "ray://HOST:PORT")


@contextmanager
def connected(address: str) -> Iterator[ModuleType]:
    """Ray, initialised for the length of the block: a fresh single-box cluster for `local`
    (stopped afterwards), else a connection to the running cluster at `address`."""
    ray = import_ray()
    if ray.is_initialized():  # a caller (a test, a notebook) already chose the cluster
        yield ray
        return
    options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                               "log_to_driver": True}
    if address == "local":
        ray.init(address="local", num_cpus=os.cpu_count() or 1, **options)
    else:
        ray.init(address=address, **options)
    try:
        yield ray
    finally:
        ray.shutdown()


@contextmanager
def session(opts: TrainOptions) -> Iterator[None]:
    """Ray for a whole run, started before the driver builds its features: meanwhile each
    worker imports torch and the trainer (seconds per process), so the folds start at once."""
    with connected(check_address(opts.ray or "local")) as ray:
        per_task = max(1, opts.threads)
        slots = max(1, int(ray.cluster_resources().get("CPU", 1) // per_task))
        warm = ray.remote(_warm).options(num_cpus=per_task)
        pending = [warm.remote() for _ in range(min(opts.folds, slots))]
        try:
            yield
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


def _warm() -> None:
    import appliance.train.train  # noqa: F401 - loads torch, transformers and the trainer


def gpu_share(cluster_gpus: float, n_folds: int) -> float:
    """The GPU fraction each fold's task asks for: the cluster's GPUs spread over the folds,
    at most one each, in hundredths (Ray's resolution), never rounded up past what exists."""
    if cluster_gpus <= 0 or n_folds <= 0:
        return 0.0
    return max(0.01, math.floor(min(1.0, cluster_gpus / n_folds) * 100) / 100)


def _fold_task(arrays: tuple[np.ndarray, ...], fold_of: np.ndarray, fold: int,
               opts: TrainOptions, parent_state: dict[str, torch.Tensor] | None,
               queue: Any) -> tuple[int, dict[str, np.ndarray], dict[str, Any]]:
    """One fold, in a Ray worker. The object store's arrays are read-only: copied once."""
    from appliance.train.train import Tensors, train_fold

    data = Tensors(*(torch.from_numpy(np.array(a)) for a in arrays))

    def on_epoch(f: int, epoch: int, train_loss: float, val_loss: float) -> None:
        queue.put((f, epoch, train_loss, val_loss))

    result = train_fold(data, fold_of, fold, opts, parent_state, on_epoch)
    return fold, {k: v.numpy() for k, v in result.state.items()}, result.report


def _forward(queue: Any, on_epoch: EpochSink) -> None:
    while not queue.empty():
        on_epoch(*queue.get_nowait())


def train_folds_on_ray(data: Tensors, fold_of: np.ndarray, folds: list[int],
                       opts: TrainOptions,
                       parent_for: Callable[[int], dict[str, torch.Tensor] | None],
                       on_epoch: EpochSink) -> Iterator[FoldResult]:
    """Each fold of `folds` as a Ray task on the cluster at opts.ray; yields each fold's
    result as it finishes (in any order)."""
    from appliance.train.train import FoldResult

    address = check_address(opts.ray or "local")
    with connected(address) as ray:
        from ray.util.queue import Queue

        gpus = float(ray.cluster_resources().get("GPU", 0))
        if opts.device == "cuda" and gpus == 0:
            raise DeviceError(f"--device cuda: the Ray cluster at {address!r} has no GPU")
        share = gpu_share(gpus, len(folds)) if opts.device != "cpu" else 0.0
        queue = Queue()
        arrays = ray.put(tuple(t.numpy() for t in data.arrays()))
        fold_ref = ray.put(fold_of)
        task = ray.remote(_fold_task).options(num_cpus=max(1, opts.threads), num_gpus=share,
                                              max_retries=0)
        pending = {task.remote(arrays, fold_ref, f, opts, parent_for(f), queue): f
                   for f in folds}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                _forward(queue, on_epoch)
                for ref in ready:
                    fold = pending.pop(ref)
                    try:
                        _, state, report = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        cause = getattr(exc, "cause", None) or exc
                        raise FoldFailedError(f"fold {fold} failed on Ray: "
                                              f"{type(cause).__name__}: {cause}") from None
                    yield FoldResult(fold, {k: torch.from_numpy(v.copy())
                                            for k, v in state.items()}, report)
            _forward(queue, on_epoch)
        finally:
            for ref in pending:  # a failed fold or an interrupted caller: stop the rest
                ray.cancel(ref, force=True)
