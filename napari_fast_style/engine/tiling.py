"""Run a :class:`~src_models.TransformerNet` over planes of any size with bounded memory.

Instance norm makes every output pixel depend on statistics of the *whole* image, so naive tiling
gives each tile its own colours and the seams show. Here the statistics are made global and exact:

1. Pass ``k`` (one per norm layer, in forward order) runs every tile through the network up to norm
   layer ``k`` - earlier norm layers already use the global statistics of passes ``< k`` - and
   accumulates count / mean / M2 (Chan et al.'s parallel update, float64) over each tile's *core*.
2. The last pass applies all global statistics and writes each tile's core.

Each tile carries a halo of the network's receptive-field radius, so its core sees exactly what it
sees in a whole-image run: the tiled result equals the untiled one up to float rounding. Planes of a
stack can share statistics (``share_stats``), which keeps colours steady through a time-lapse.

When a plane fits in the memory budget (and statistics are per plane) it runs in one pass, untiled.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable, Generator, Optional, Sequence

import torch

from src_models.transformer_net import NormContext, StopForward, TransformerNet

from .convert import PlaneReader
from .device import autocast
from .progress import CancelToken, Cancelled, Progress

log = logging.getLogger(__name__)

Region = tuple[int, int, int, int]  # y0, y1, x0, x1


@dataclass(frozen=True)
class RunPlan:
    padded: tuple[int, int]
    tiles: list  # core regions on the padded grid
    halo: int
    untiled: bool


def padded_size(h: int, w: int, factor: int) -> tuple[int, int]:
    """Round up to a multiple of the network's factor (at least two steps of it)."""
    f = factor
    return max(2 * f, -(-h // f) * f), max(2 * f, -(-w // f) * f)


def bytes_per_pixel(net: TransformerNet, dtype: torch.dtype = torch.float32) -> float:
    """Peak activation bytes per input pixel of an untiled forward pass (an estimate with margin)."""
    item = torch.finfo(dtype).bits // 8
    c = net.config["channels"]
    s = 1
    widest = 3.0
    for ch, st in zip(c, net.config["strides"]):
        widest = max(widest, ch / (s * s))  # input of each strided conv and its output
        s *= st
        widest = max(widest, ch / (s * s))
    for ch in c:  # upsampled inputs of the decoder convolutions
        widest = max(widest, 2 * ch / (s * s) * 4)
    return 4.0 * item * widest + 24.0  # ~4 live tensors + the float input/output planes


def default_memory_budget(device: torch.device) -> int:
    """Bytes a single untiled pass may use: half the free GPU memory, or min(4 GiB, 40 % of free RAM)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        avail = 8 << 30
    return int(min(4 << 30, 0.4 * avail))


def plan(net: TransformerNet, h: int, w: int, tile: Optional[int], budget: int, dtype: torch.dtype,
         force_tiled: bool = False) -> RunPlan:
    f = net.factor
    hp, wp = padded_size(h, w, f)
    untiled = tile is None and not force_tiled and hp * wp * bytes_per_pixel(net, dtype) <= budget
    if untiled:
        return RunPlan((hp, wp), [(0, hp, 0, wp)], 0, True)
    if tile is None:  # largest square core whose padded tile fits the budget, capped at 1024
        per_px = bytes_per_pixel(net, dtype)
        side = int((budget / per_px) ** 0.5) - 2 * net.halo
        tile = max(4 * f, min(1024, side))
    tile = max(f, (int(tile) // f) * f)
    tiles = [(y, min(y + tile, hp), x, min(x + tile, wp)) for y in range(0, hp, tile) for x in range(0, wp, tile)]
    return RunPlan((hp, wp), tiles, net.halo, False)


def _combine(acc, part):
    if acc is None:
        return part
    na, ma, m2a = acc
    nb, mb, m2b = part
    n = na + nb
    delta = mb - ma
    return n, ma + delta * (nb / n), m2a + m2b + delta ** 2 * (na * nb / n)


def _tile_input(reader: PlaneReader, core: Region, halo: int, padded: tuple[int, int]) -> tuple[torch.Tensor, Region]:
    """Tile with halo, clipped to the padded plane; returns it and the core's place inside it."""
    y0, y1, x0, x1 = core
    hp, wp = padded
    a0, a1 = max(0, y0 - halo), min(hp, y1 + halo)
    b0, b1 = max(0, x0 - halo), min(wp, x1 + halo)
    return reader.read(a0, a1, b0, b1), (y0 - a0, y1 - a0, x0 - b0, x1 - b0)


def run_planes(
    net: TransformerNet,
    readers: Sequence[PlaneReader],
    sink: Callable[[int, Region, torch.Tensor], None],
    *,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    style_weights: Optional[torch.Tensor] = None,
    tile: Optional[int] = None,
    share_stats: bool = False,
    memory_budget: Optional[int] = None,
    cancel: Optional[CancelToken] = None,
) -> Generator[Progress, None, int]:
    """Stylize ``readers`` (planes of one size) and hand every output core to ``sink(plane, region,
    out)`` with ``out`` = ``[1, 3, h, w]`` float32 network output (model units) on the CPU, region on
    the unpadded plane. Returns the number of planes completed (fewer when cancelled)."""
    if not readers:
        return 0
    h, w = readers[0].h, readers[0].w
    budget = memory_budget if memory_budget is not None else default_memory_budget(device)
    rp = plan(net, h, w, tile, budget, dtype, force_tiled=share_stats and len(readers) > 1)
    n_norm = len(net.norms())
    sw = style_weights.to(device) if style_weights is not None else None
    per_plane_passes = 1 if rp.untiled else n_norm + 1
    groups = [list(range(len(readers)))] if share_stats else [[i] for i in range(len(readers))]
    total = len(readers) * per_plane_passes * len(rp.tiles)
    step = 0
    done = 0

    def forward(x, ctx):
        with torch.inference_mode(), autocast(device, dtype):
            return net(x.to(device) * 255.0, sw, ctx)

    try:
        for group in groups:
            stats: list = []
            if not rp.untiled:
                for k in range(n_norm):
                    acc = None
                    for p in group:
                        for core in rp.tiles:
                            if cancel is not None:
                                cancel.check()
                            x, (cy0, cy1, cx0, cx1) = _tile_input(readers[p], core, rp.halo, rp.padded)
                            ctx = NormContext(stats=stats, collect=k, region=(cy0, cx0, cy1 - cy0, cx1 - cx0))
                            try:
                                forward(x, ctx)
                            except StopForward:
                                pass
                            acc = _combine(acc, ctx.result)
                            step += 1
                            yield Progress("statistics", step, total, message=f"norm layer {k + 1}/{n_norm}")
                    n, mean, m2 = acc
                    stats.append((mean.float().to(device), (m2 / n).float().to(device)))
            for p in group:
                for core in rp.tiles:
                    if cancel is not None:
                        cancel.check()
                    x, (cy0, cy1, cx0, cx1) = _tile_input(readers[p], core, rp.halo, rp.padded)
                    y = forward(x, NormContext(stats=stats) if stats else None)
                    y = y[:, :, cy0:cy1, cx0:cx1].float().cpu()
                    y0, y1, x0, x1 = core
                    y1c, x1c = min(y1, h), min(x1, w)
                    if y0 < h and x0 < w:
                        sink(p, (y0, y1c, x0, x1c), y[:, :, : y1c - y0, : x1c - x0])
                    step += 1
                    yield Progress("stylize", step, total, message=f"plane {p + 1}/{len(readers)}")
                done += 1
    except Cancelled:
        pass
    return done
