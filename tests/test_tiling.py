"""Tiled inference with global instance-norm statistics equals the untiled run (no seams)."""
import numpy as np
import pytest
import torch

from napari_fast_style.engine import StylizeConfig, run_sync, stylize, stylize_iter
from napari_fast_style.engine.tiling import plan

from .conftest import random_style_net


def rel(a, b):
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b.astype(np.float64)))


@pytest.mark.parametrize("arch,tile", [("fast", 64), ("fast", 96), ("classic", 64)])
def test_tiled_equals_untiled(arch, tile, random_model, rng):
    img = rng.random((150, 203, 3)).astype(np.float32)  # not a multiple of any tile or factor
    m = str(random_model(arch))
    whole = stylize(img, m, device="cpu", precision="fp32")
    tiled = stylize(img, m, tile=tile, device="cpu", precision="fp32")
    assert rel(tiled, whole) < 1e-3
    # no seams: the largest pixel difference is rounding, not a tile boundary
    assert np.abs(tiled - whole).max() < 1e-4


def test_tiling_plan_respects_memory_budget():
    net = random_style_net("classic")
    small = plan(net, 512, 512, None, budget=4 << 30, dtype=torch.float32)
    assert small.untiled
    big = plan(net, 8000, 8000, None, budget=256 << 20, dtype=torch.float32)
    assert not big.untiled and len(big.tiles) > 1
    assert all((y1 - y0) % net.factor == 0 for y0, y1, _, _ in big.tiles)


def test_shared_statistics_across_planes(random_model, rng):
    """Shared stats: every plane uses one set of statistics, equal to those of the whole stack."""
    stack = (rng.random((3, 64, 80, 3)) * 255).astype(np.uint8)
    stack[1] //= 3  # a darker frame: per-plane statistics would brighten it
    m = str(random_model())
    shared = stylize(stack, m, share_stats=True, device="cpu", precision="fp32")
    per_plane = stylize(stack, m, device="cpu", precision="fp32")
    assert shared.shape == per_plane.shape == (3, 64, 80, 3)
    assert not np.array_equal(shared[1], per_plane[1])
    # the same shared statistics, computed with small tiles, give the same result
    tiled = stylize(stack, m, share_stats=True, tile=32, device="cpu", precision="fp32")
    assert np.abs(tiled.astype(int) - shared.astype(int)).max() <= 1


def test_cancel_returns_finished_planes(random_model, rng):
    from napari_fast_style.engine import CancelToken

    stack = (rng.random((4, 48, 48, 3)) * 255).astype(np.uint8)
    token2 = CancelToken()
    seen = []

    def cb(p):
        seen.append(p.step)
        if p.step == 2:
            token2.cancel()

    res = run_sync(stylize_iter(stack, str(random_model()), StylizeConfig(device="cpu"), cancel=token2), cb)
    assert res.cancelled and res.planes_done == 2 and res.planes_total == 4
    assert res.data.shape == stack.shape
    np.testing.assert_array_equal(res.data[2:], stack[2:])  # unfinished planes show the input
    assert not np.array_equal(res.data[0], stack[0])
