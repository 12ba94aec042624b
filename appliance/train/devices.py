"""Where a member trains: the CPU or a CUDA GPU, and mixed precision on the GPU.

Export and the parity gate always run on the CPU (appliance.train.export): onnxruntime serves
on the CPU, so that is the arithmetic the gates must compare against.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from appliance.errors import UsageError

DEVICES = ("auto", "cpu", "cuda")


class DeviceError(UsageError):
    """The device asked for is not there (a usage error: exit 2)."""


def resolve_device(name: str) -> torch.device:
    """"auto": CUDA when torch sees a GPU, else the CPU; "cuda" where there is none is refused."""
    if name not in DEVICES:
        raise DeviceError(f"--device {name!r}: expected one of {', '.join(DEVICES)}")
    if name == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if name == "auto":
        return torch.device("cpu")
    why = ("this torch is a CPU build" if torch.version.cuda is None
           else "torch sees no CUDA GPU (driver, CUDA_VISIBLE_DEVICES?)")
    raise DeviceError(f"--device cuda: {why}; use --device cpu or auto")


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast type on a GPU: bfloat16 where supported (no loss scaling needed), else
    float16 (with a GradScaler); None on the CPU, which trains in float32."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@contextlib.contextmanager
def autocast(device: torch.device) -> Iterator[None]:
    dtype = amp_dtype(device)
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def grad_scaler(device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling for float16 only; a disabled scaler passes through unchanged."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype(device) == torch.float16)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)}, {amp_dtype(device)} autocast)"
    return "cpu"
