"""Device and precision policy: auto -> CUDA -> MPS -> CPU; reduced precision where it helps."""
from __future__ import annotations

import contextlib
import functools
import logging
import sys

import torch

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; an explicit device must be available."""
    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is available")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' was requested but Apple MPS is not available")
    if name.split(":")[0] not in DEVICES[1:]:
        raise ValueError(f"unknown device {device!r}; choose one of {DEVICES}")
    return torch.device(name)


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True on CPUs with native bf16 dot products (AVX512-BF16 or AMX), where bf16 halves the time."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo") as f:
                flags = f.read()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """``auto``: fp16 on CUDA/MPS, bf16 on CPUs with native bf16, otherwise fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device.type in ("cuda", "mps"):
        return torch.float16
    return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32


def autocast(device: torch.device, dtype: torch.dtype):
    """Autocast context for reduced precision (a no-op for fp32)."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
