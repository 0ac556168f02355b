"""Device and precision policy: bf16 autocast on a CPU only where it is measured faster than fp32."""
import math

import pytest
import torch

from napari_fast_style.engine import device as dev


def test_conv_probe_times_both_precisions():
    for dtype in (torch.float32, torch.bfloat16):
        t = dev._conv_seconds(dtype, reps=1)
        assert math.isfinite(t) and 0 < t < 10


def test_auto_precision_follows_the_probe():
    cpu = torch.device("cpu")
    expected = torch.bfloat16 if dev.cpu_has_fast_bf16() else torch.float32
    assert dev.resolve_precision("auto", cpu) == expected
    assert dev.resolve_precision("fp32", cpu) == torch.float32
    assert dev.resolve_precision("bf16", cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="unknown precision"):
        dev.resolve_precision("int8", cpu)


def test_no_bf16_without_the_cpu_flag(monkeypatch):
    """Without AVX512-BF16/AMX the probe is not even run: fp32."""
    dev.cpu_has_fast_bf16.cache_clear()
    monkeypatch.setattr(dev, "_cpu_bf16_flag", lambda: False)
    monkeypatch.setattr(dev, "BF16_MIN_SPEEDUP", 0.0)  # would pick bf16 if the probe ran
    try:
        assert dev.cpu_has_fast_bf16() is False
    finally:
        dev.cpu_has_fast_bf16.cache_clear()


def test_the_flag_alone_is_not_enough(monkeypatch):
    """With the flag, the measured speed decides: an unreachable threshold gives fp32, none gives bf16."""
    monkeypatch.setattr(dev, "_cpu_bf16_flag", lambda: True)
    try:
        for threshold, expected in ((1e9, False), (0.0, True)):
            dev.cpu_has_fast_bf16.cache_clear()
            monkeypatch.setattr(dev, "BF16_MIN_SPEEDUP", threshold)
            assert dev.cpu_has_fast_bf16() is expected
    finally:
        dev.cpu_has_fast_bf16.cache_clear()
