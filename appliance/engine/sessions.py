"""onnxruntime sessions for ensemble members (CPU only: the appliance has no accelerator)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnxruntime as ort

INPUT_NAMES = ("x", "scalars")
OUTPUT_NAMES = ("scores", "presence")
# Models that learn the rig's placement add a third output: the residual (mm) from the
# crossing, per position ([B, 3, L]); folders from before have only the two above.
OFFSET_NAME = "offset"


_process_threads: int | None = None


def set_default_threads(threads: int | None) -> None:
    """This process's intra-op threads for sessions made from now on (None: back to the
    default). The daemon sets 1: its estimate workers run batches side by side, one core
    each, which on a small CPU beats one batch at a time spread over every core."""
    global _process_threads
    _process_threads = None if threads is None else max(1, int(threads))


def default_threads() -> int:
    """Intra-op threads per session.

    Members run one after another, so each may use the cores, but beyond 4 threads the small
    per-hole graphs only pay synchronisation; APPLIANCE_ORT_THREADS overrides, then what the
    process set with set_default_threads.
    """
    env = os.environ.get("APPLIANCE_ORT_THREADS")
    if env:
        return max(1, int(env))
    if _process_threads is not None:
        return _process_threads
    return max(1, min(4, os.cpu_count() or 1))


def make_session(model_bytes: bytes, threads: int | None = None) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or default_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Logs go to stderr of a daemon; only errors are worth a line there.
    opts.log_severity_level = 3
    if os.environ.get("APPLIANCE_ORT_SPIN", "0") != "1":
        # Idle pool threads spin by default; on a small shared CPU that spinning steals the
        # cores from other sessions' requests (and from loading a new model during a swap).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])


def io_signature(session: ort.InferenceSession) -> dict[str, dict[str, list[Any]]]:
    """Input and output names -> declared shapes (dims as int or symbolic name)."""
    return {
        "inputs": {i.name: list(i.shape) for i in session.get_inputs()},
        "outputs": {o.name: list(o.shape) for o in session.get_outputs()},
    }


def output_names(session: ort.InferenceSession) -> tuple[str, ...]:
    """The contract's outputs this member has: OUTPUT_NAMES, plus OFFSET_NAME if it learnt
    placement."""
    have = {o.name for o in session.get_outputs()}
    return OUTPUT_NAMES + ((OFFSET_NAME,) if OFFSET_NAME in have else ())


def run_member(
    session: ort.InferenceSession, x: np.ndarray, scalars: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(scores, presence logits, offset or None)."""
    outs = session.run(list(output_names(session)), {"x": x, "scalars": scalars})
    offset = np.asarray(outs[2], dtype=np.float32) if len(outs) > 2 else None
    return np.asarray(outs[0], dtype=np.float32), np.asarray(outs[1], dtype=np.float32), offset
