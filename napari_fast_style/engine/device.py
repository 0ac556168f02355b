"""Device and precision policy: auto -> CUDA -> MPS -> CPU; reduced precision where it helps."""
from __future__ import annotations

import contextlib
import functools
import logging
import sys
import time

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


def _cpu_bf16_flag() -> bool:
    """True when the CPU says it has native bf16 dot products (AVX512-BF16 or AMX)."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo") as f:
                flags = f.read()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return False


def _conv_seconds(dtype: torch.dtype, reps: int = 3) -> float:
    """Best time of a small convolution block's forward and backward pass (channels-last, as the engine runs)."""
    gen = torch.Generator().manual_seed(0)
    w1 = torch.randn(64, 64, 3, 3, generator=gen).mul_(0.05).requires_grad_(True)
    w2 = torch.randn(64, 64, 3, 3, generator=gen).mul_(0.05).requires_grad_(True)
    x = torch.randn(2, 64, 64, 64, generator=gen).contiguous(memory_format=torch.channels_last)
    best = float("inf")
    for _ in range(reps + 1):  # the first one warms up
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            y = torch.nn.functional.conv2d(torch.relu(torch.nn.functional.conv2d(x, w1, padding=1)), w2, padding=1)
        y.float().square().mean().backward()
        best = min(best, time.perf_counter() - t)
    return best


#: bf16 autocast is chosen on a CPU only when it runs the probe at least this much faster than fp32
BF16_MIN_SPEEDUP = 1.15


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True on CPUs where bf16 autocast is actually faster than fp32 (measured once per process, ~0.3 s).

    The AVX512-BF16/AMX flag alone is not enough: on an Intel Xeon with AVX512-BF16 but no AMX a training
    step ran 1.7x *slower* in bf16 (3.1 s against 1.8 s, ``fast`` at 256 px, batch 4, two threads), where
    a Xeon with AMX ran the same step in 1.1 s in bf16. So the flag is checked first, then a small
    convolution block is timed both ways.
    """
    if not _cpu_bf16_flag():
        return False
    try:
        fp32, bf16 = _conv_seconds(torch.float32), _conv_seconds(torch.bfloat16)
    except RuntimeError:  # a torch build without CPU bf16 kernels
        return False
    fast = fp32 / bf16 >= BF16_MIN_SPEEDUP
    log.info("CPU bf16 probe: fp32 %.1f ms, bf16 %.1f ms -> %s", fp32 * 1e3, bf16 * 1e3, "bf16" if fast else "fp32")
    return fast


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """``auto``: fp16 on CUDA/MPS, bf16 on CPUs where it is measured faster (:func:`cpu_has_fast_bf16`), otherwise fp32."""
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
