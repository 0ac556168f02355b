"""Exact stylize: Gatys, Ecker & Bethge's optimisation ("A Neural Algorithm of Artistic Style").

No trained network: the output image itself is optimised so that its features on a fixed CNN match
the content photo and its Gram matrices match one or more style images (blended by weights), with a
total-variation term for smoothness. What makes it affordable on a laptop:

* **a colour-matched start**: the content photo recoloured to the style's colour statistics (its
  luminance kept), which closes a third to a half of the Gram gap before the first iteration;
* **coarse-to-fine** for large outputs: the image is optimised at low resolution first and the result,
  upsampled, initialises the next level, so the expensive full-resolution level needs few iterations;
* **L-BFGS** by default (Adam optional), on a tensor parametrised in [0, 1] RGB;
* **bf16 autocast** on CPUs with native bf16 (fp16 on GPUs) for the loss network; Gram matrices and
  losses stay in float32.

The losses are the relative ones of :mod:`.losses`, so ``style_weight`` means the same at any size,
and they are exactly what ``shared/tools/style_metrics.py`` measures (gap closed, content distance).
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Generator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .convert import ImageError, PlaneReader, describe, from_unit, read_plane
from .device import autocast, resolve_device, resolve_precision
from .losses import content_loss, gram, style_loss, tv_loss
from .models import ModelError, default_vgg_path, load_loss_network
from .progress import CancelToken, Progress, run_sync
from .stylize import _RGB2YIQ, blend_and_color

log = logging.getLogger(__name__)


INITS = ("matched", "content", "style", "noise")


def match_colors(content: torch.Tensor, styles: Sequence[tuple[torch.Tensor, float]]) -> torch.Tensor:
    """The content with the style's colours and its own luminance (the ``"matched"`` initialisation).

    The RGB mean and covariance of the content are mapped onto those of the (weighted mixture of the)
    style images by the linear Monge-Kantorovich transport; then the content's luminance detail is put
    back (only the style's mean luminance is kept). The lowest layers' Gram matrices are mostly colour
    statistics, so this starts the optimisation with much of the style gap already closed, while the
    photo's structure, which the content loss protects, is untouched. ``[1, 3, H, W]`` in [0, 1].
    """
    # 3x3 statistics in float64 on the CPU (MPS has no float64; the cost is a few passes over the pixels)
    c = content[0].reshape(3, -1).detach().cpu().double()
    mu_s = torch.zeros(3, 1, dtype=torch.float64)
    m2_s = torch.zeros(3, 3, dtype=torch.float64)
    for s, w in styles:  # moments of the mixture
        f = s[0].reshape(3, -1).detach().cpu().double()
        mu = f.mean(1, keepdim=True)
        mu_s += w * mu
        m2_s += w * (f @ f.T / f.shape[1])
    cov_s = m2_s - mu_s @ mu_s.T + 1e-5 * torch.eye(3, dtype=torch.float64)
    mu_c = c.mean(1, keepdim=True)
    cov_c = torch.cov(c) + 1e-5 * torch.eye(3, dtype=torch.float64)

    def sqrtm(m):
        e, v = torch.linalg.eigh(m)
        return v @ torch.diag(e.clamp_min(0).sqrt()) @ v.T

    ch = sqrtm(cov_c)
    ch_inv = torch.linalg.inv(ch)
    t = ch_inv @ sqrtm(ch @ cov_s @ ch) @ ch_inv
    moved = (t @ (c - mu_c) + mu_s).clamp(0, 1)
    lum = torch.from_numpy(_RGB2YIQ[:1].astype(np.float64))  # the luminance row used by preserve-colour
    y_moved, y_c = lum @ moved, lum @ c
    out = moved - y_moved + y_c + (y_moved.mean() - y_c.mean())
    return out.clamp(0, 1).reshape(content.shape).to(device=content.device, dtype=content.dtype)


TILE_OVERLAP = 64  # pixels shared by neighbouring tiles of a tiled final level (feathered)
TILE_AUTO_PIXELS = 2048 * 2048  # automatic tiling above this many output pixels (about 12 GiB in fp32 on a CPU)
TILE_AUTO_SIZE = 1024


def tile_overlap(tile: int) -> int:
    """Pixels neighbouring tiles share: ``TILE_OVERLAP``, or a quarter of a small tile."""
    return min(TILE_OVERLAP, tile // 4)


def tile_boxes(h: int, w: int, tile: int) -> list[tuple[int, int, int, int]]:
    """Overlapping ``(y0, y1, x0, x1)`` boxes of at most ``tile`` pixels a side covering an ``h`` x ``w``
    image; neighbours share at least :func:`tile_overlap` pixels."""
    overlap = tile_overlap(tile)

    def starts(n):
        if n <= tile:
            return [0]
        k = math.ceil((n - overlap) / (tile - overlap))
        return [round(i * (n - tile) / (k - 1)) for i in range(k)]

    return [(y, min(h, y + tile), x, min(w, x + tile)) for y in starts(h) for x in starts(w)]


def _feather(box: tuple[int, int, int, int], h: int, w: int, overlap: int) -> torch.Tensor:
    """``[1, 1, bh, bw]`` blending weights of a tile: 1 inside, a linear ramp over ``overlap`` pixels
    towards every edge that is not the image border."""
    y0, y1, x0, x1 = box

    def ramp(n, lo_inner, hi_inner):
        r = torch.ones(n)
        k = min(overlap, n // 2)
        edge = (torch.arange(k, dtype=torch.float32) + 1) / (k + 1)
        if lo_inner:
            r[:k] = torch.minimum(r[:k], edge)
        if hi_inner:
            r[n - k:] = torch.minimum(r[n - k:], edge.flip(0))
        return r

    ry = ramp(y1 - y0, y0 > 0, y1 < h)
    rx = ramp(x1 - x0, x0 > 0, x1 < w)
    return (ry[:, None] * rx[None, :])[None, None]


STYLE_HALO = 96  # context pixels around each piece of a large style image (a multiple of the deepest stride)


def style_grams(style: torch.Tensor, layers: Sequence[str], feats: Callable, tile: int = 0) -> dict:
    """Gram matrices of a ``[1, 3, H, W]`` style image at ``layers``; with ``tile`` > 0 the image goes
    through the network in a grid of about ``tile``-pixel pieces (each with ``STYLE_HALO`` pixels of
    context, cropped off again at every layer) and their Gram matrices are averaged, weighted by their
    positions, so a style image as large as a tiled output fits in memory too."""
    h, w = style.shape[-2:]
    if not tile or max(h, w) <= tile:
        fs = feats(style)
        return {name: gram(fs[name].float())[0] for name in layers}

    def cuts(n):  # piece borders on multiples of 32 pixels, so every layer's stride divides them
        k = math.ceil(n / tile)
        return sorted({min(n, round(i * n / k / 32) * 32) for i in range(k)} | {n})

    sums: dict = {}
    counts: dict = {}
    ys, xs = cuts(h), cuts(w)
    for y0, y1 in zip(ys, ys[1:]):
        for x0, x1 in zip(xs, xs[1:]):
            py0, px0 = max(0, y0 - STYLE_HALO), max(0, x0 - STYLE_HALO)
            py1, px1 = min(h, y1 + STYLE_HALO), min(w, x1 + STYLE_HALO)
            fs = feats(style[..., py0:py1, px0:px1].contiguous())
            for name in layers:
                f = fs[name]
                sy, sx = (py1 - py0) / f.shape[-2], (px1 - px0) / f.shape[-1]  # this layer's stride
                core = f[..., round((y0 - py0) / sy):round((y1 - py0) / sy),
                         round((x0 - px0) / sx):round((x1 - px0) / sx)]
                n = core.shape[-2] * core.shape[-1]
                if n == 0:
                    continue
                sums[name] = sums.get(name, 0) + gram(core.float())[0] * n
                counts[name] = counts.get(name, 0) + n
    return {name: sums[name] / counts[name] for name in layers}


@dataclass(frozen=True)
class OptimizeConfig:
    """Settings of one optimisation (validated on construction).

    ``iterations``: the most optimiser iterations at the final resolution; each coarser level gets at
    most ``coarse_iterations``. A level ends early once converged: when the loss fell by less than
    ``tolerance`` (relative) over the last ``patience`` iterations (``tolerance=0`` runs them all).
    ``size``: longer side of the output in pixels (None: the content's size).
    ``levels``: number of coarse-to-fine levels (each half the size of the next); None: one level up to
    1024 px and one more per doubling above that. (A coarse level pays off only for large outputs: at
    512 px its upsampled result starts the fine level with blurred detail the content loss then has to
    restore, which costs more fine iterations than the coarse level saved.)
    ``style_weight``: the style <-> content control (content weight is 1).
    ``init``: ``"matched"`` (the content in the style's colours, see :func:`match_colors`), ``"content"``,
    ``"style"`` or ``"noise"``.
    ``time_limit``: the run takes at most this many seconds: no iteration starts that would end after
    the limit, judged by how long the previous one took (the best image so far is the result, as with
    Stop); a laptop-friendly cap that makes the run's length predictable whatever the size.
    ``tile``: optimise each level larger than this in overlapping tiles of at most this many pixels a
    side, one after the other, so outputs larger than memory allows still work (None: automatic, tiles
    of 1024 px for levels above ``TILE_AUTO_PIXELS``; 0: never). Every tile starts from the upsampled
    coarser level and is matched to the style's global Gram statistics; overlaps are feathered.
    """

    iterations: int = 300
    size: Optional[int] = 512
    levels: Optional[int] = None
    coarse_iterations: int = 15
    tolerance: float = 2e-3  # a level ends when the loss fell by less than this fraction over `patience` its
    patience: int = 5
    time_limit: Optional[float] = None  # seconds from the start; the run then ends with its best image so far
    style_weight: float = 25.0
    content_weight: float = 1.0
    tv_weight: float = 1.0
    network: str = "vgg16"
    content_layer: Optional[str] = None  # None: the network's default (VGG16: relu3_3)
    style_layers: Optional[tuple] = None  # None: the network's default (VGG16: relu1_2 .. relu4_3)
    style_layer_weights: Optional[tuple] = None
    style_scale: float = 1.0
    init: str = "matched"
    optimizer: str = "lbfgs"
    lr: float = 0.02  # Adam only
    line_search: bool = False  # L-BFGS: strong-Wolfe line search (about 2x the evaluations per iteration)
    preserve_color: bool = False
    tile: Optional[int] = None
    preview_every: int = 10
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self):
        if self.iterations < 0 or self.coarse_iterations < 0:
            raise ValueError("iterations must be >= 0")
        if self.size is not None and self.size < 32:
            raise ValueError("size must be at least 32 pixels")
        if self.levels is not None and self.levels < 1:
            raise ValueError("levels must be >= 1 (or None: automatic)")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(repr(i) for i in INITS)}")
        if self.optimizer not in ("lbfgs", "adam"):
            raise ValueError("optimizer must be 'lbfgs' or 'adam'")
        if self.style_weight < 0 or self.content_weight < 0 or self.tv_weight < 0:
            raise ValueError("loss weights must be non-negative")
        if self.time_limit is not None and self.time_limit <= 0:
            raise ValueError("time_limit must be positive (or None)")
        if self.style_scale <= 0:
            raise ValueError("style_scale must be positive")
        if self.tile is not None and self.tile != 0 and self.tile < 32:
            raise ValueError("tile must be 0 (never), None (automatic) or at least 32 pixels")
        from src_models.loss_networks import LOSS_NETWORKS

        if self.network not in LOSS_NETWORKS:
            raise ValueError(f"unknown loss network {self.network!r}; choose one of {sorted(LOSS_NETWORKS)}")
        if self.style_layer_weights is not None and len(self.style_layer_weights) != len(self.layers()[0]):
            raise ValueError("style_layer_weights needs one weight per style layer")

    def layers(self) -> tuple[tuple, str]:
        """(style layers, content layer): the configured ones or the network's defaults.

        VGG16's defaults are the yardstick's layers (Gram at relu1_2, relu2_2, relu3_3, relu4_3; content
        at relu3_3), so what is optimised is what ``style_metrics.py`` measures; the other networks use
        the defaults of :mod:`src_models.loss_networks` (VGG19: Gatys et al.'s relu1_1..relu5_1 / relu4_2).
        """
        from src_models.loss_networks import LOSS_NETWORKS

        if self.network == "vgg16":
            style, content = ("relu1_2", "relu2_2", "relu3_3", "relu4_3"), "relu3_3"
        else:
            spec = LOSS_NETWORKS[self.network]
            style, content = spec.style_layers, spec.content_layer
        return tuple(self.style_layers or style), self.content_layer or content


@dataclass
class OptimizeResult:
    data: np.ndarray
    cancelled: bool
    iterations: int
    seconds: float
    losses: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    metadata: dict = field(default_factory=dict)


def _to_unit(image, rgb=None, limits=None) -> tuple[np.ndarray, object, Optional[np.ndarray]]:
    """Any 2D grey / RGB / RGBA image -> float32 HxWx3 in [0, 1] (and its layout and raw alpha)."""
    layout = describe(image, rgb=rgb, limits=limits)
    if layout.leading:
        raise ImageError(f"optimize takes one 2D image, got a stack of shape {layout.shape}; pick a plane")
    plane = read_plane(image, layout, ())
    r = PlaneReader(plane, layout)
    h, w = layout.spatial
    raw = r.raw(0, h, 0, w)
    return r.unit(raw), layout, (raw[..., 3] if layout.has_alpha else None)


def _resize(t: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    if tuple(t.shape[-2:]) == tuple(hw):
        return t
    down = hw[0] < t.shape[-2]
    return F.interpolate(t, size=hw, mode="bilinear", align_corners=False, antialias=down).clamp(0, 1)


def auto_levels(longer_side: int) -> int:
    """Coarse-to-fine levels for an output whose longer side is ``longer_side`` px (see OptimizeConfig)."""
    return 1 if longer_side <= 1024 else 1 + math.ceil(math.log2(longer_side / 1024))


def _level_sizes(h: int, w: int, size: Optional[int], levels: Optional[int]) -> list[tuple[int, int]]:
    s = 1.0 if size is None else size / max(h, w)
    if levels is None:
        levels = auto_levels(round(max(h, w) * s))
    out = []
    for k in range(levels - 1, -1, -1):
        f = s / (2 ** k)
        hh, ww = max(16, round(h * f)), max(16, round(w * f))
        if not out or (hh, ww) != out[-1]:
            out.append((hh, ww))
    return out


def parse_styles(styles) -> list[tuple[object, float]]:
    """One image, a list of images, or a list of (image, weight) pairs -> normalised pairs."""
    if isinstance(styles, np.ndarray) or hasattr(styles, "shape"):
        styles = [styles]
    pairs = []
    for s in styles:
        if isinstance(s, tuple) and len(s) == 2 and np.isscalar(s[1]):
            pairs.append((s[0], float(s[1])))
        else:
            pairs.append((s, 1.0))
    if not pairs:
        raise ValueError("give at least one style image")
    w = np.array([p[1] for p in pairs])
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError("style weights must be non-negative with a positive sum")
    return [(img, float(wi / w.sum())) for (img, _), wi in zip(pairs, w)]


def optimize_iter(
    content,
    styles,
    config: Optional[OptimizeConfig] = None,
    *,
    network=None,
    rgb: Optional[bool] = None,
    contrast_limits: Optional[Sequence[float]] = None,
    cancel: Optional[CancelToken] = None,
) -> Generator[Progress, None, OptimizeResult]:
    """Optimise an image; yields :class:`Progress` (losses; a preview every ``preview_every``
    iterations) and returns an :class:`OptimizeResult`. A cancelled run returns the best image so far.

    ``network``: a loaded feature extractor (with the configured taps), a weights path, or None for
    ``$NAPARI_FAST_STYLE_VGG``.
    """
    cfg = config or OptimizeConfig()
    t0 = time.perf_counter()
    c01, layout, alpha = _to_unit(content, rgb, contrast_limits)
    pairs = parse_styles(styles)
    style01 = [(_to_unit(img)[0], w) for img, w in pairs]
    device = resolve_device(cfg.device)
    amp = resolve_precision(cfg.precision, device)
    style_layers, content_layer = cfg.layers()
    taps = tuple(dict.fromkeys((*style_layers, content_layer)))
    if network is None or isinstance(network, (str, os.PathLike)):
        if network is None and cfg.network == "vgg16" and default_vgg_path() is None:
            raise ModelError("exact stylize needs VGG16 weights: pass a weights file (CLI --vgg, API network=PATH) "
                             "or set NAPARI_FAST_STYLE_VGG")
        network = load_loss_network(cfg.network, network, taps)
    # channels-last activations: faster convolutions on CPUs (oneDNN) and on tensor-core GPUs
    net = network.to(device).eval().to(memory_format=torch.channels_last)
    missing = [t for t in taps if t not in getattr(net, "taps", taps)]
    if missing:
        raise ModelError(f"the loss network lacks the layers {missing}")
    lw = dict(zip(style_layers, cfg.style_layer_weights)) if cfg.style_layer_weights else None
    h, w = c01.shape[:2]
    sizes = _level_sizes(h, w, cfg.size, cfg.levels)
    content_full = torch.from_numpy(np.ascontiguousarray(c01.transpose(2, 0, 1)))[None].to(device)
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)

    def feats(x):
        with autocast(device, amp):
            return net(x.contiguous(memory_format=torch.channels_last))

    def level_tile(hh, ww):
        t = cfg.tile if cfg.tile is not None else (TILE_AUTO_SIZE if hh * ww > TILE_AUTO_PIXELS else 0)
        return t if t and max(hh, ww) > t else 0

    level_boxes = [tile_boxes(hh, ww, level_tile(hh, ww)) if level_tile(hh, ww) else [(0, hh, 0, ww)]
                   for hh, ww in sizes]
    total = sum((cfg.iterations if i == len(sizes) - 1 else cfg.coarse_iterations) * len(b)
                for i, b in enumerate(level_boxes))
    step = 0
    last_iteration = 0.0  # seconds the latest optimiser iteration took (for the time limit)
    history = []
    flags = {"cancelled": False, "timed_out": False}

    def run_box(x0, fc, targets, n_iter, info, compose):
        """Optimise one image (a level, or one tile of the final level); yields Progress, returns the
        best image and its losses."""
        nonlocal step, last_iteration
        x = x0.clone().requires_grad_(True)
        best = {"loss": math.inf, "img": x0.detach().clone(), "parts": {}}

        def closure():
            opt.zero_grad(set_to_none=True)
            fx = feats(x)
            s = sum(sw * style_loss(fx, tg, lw) for tg, sw in targets)
            cl = content_loss(fx[content_layer], fc)
            tv = tv_loss(x)
            loss = cfg.style_weight * s + cfg.content_weight * cl + cfg.tv_weight * tv
            loss.backward()
            closure.parts = {k: float(v.detach()) for k, v in
                             (("total", loss), ("style", s), ("content", cl), ("tv", tv))}
            if closure.parts["total"] < best["loss"]:
                best.update(loss=closure.parts["total"], img=x.detach().clamp(0, 1).clone(), parts=closure.parts)
            return loss

        if cfg.optimizer == "lbfgs":
            # like jcjohnson/neural-style: plain L-BFGS steps (one evaluation each) unless asked for a line search
            opt = torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=20,
                                    line_search_fn="strong_wolfe" if cfg.line_search else None)
        else:
            opt = torch.optim.Adam([x], lr=cfg.lr)
        level_losses: list = []
        for it in range(n_iter):
            if cancel is not None and cancel.cancelled:
                flags["cancelled"] = True
                break
            # the limit bounds the whole run: no iteration starts that would end after it (judged by the last one)
            now = time.perf_counter()
            if cfg.time_limit is not None and now - t0 + last_iteration >= cfg.time_limit:
                flags["timed_out"] = True
                break
            opt.step(closure)
            last_iteration = time.perf_counter() - now
            step += 1
            parts = dict(getattr(closure, "parts", {}))
            history.append({"step": step, **info, "seconds": round(time.perf_counter() - t0, 3), **parts})
            preview = None
            if cfg.preview_every and (step % cfg.preview_every == 0 or it == n_iter - 1):
                preview = compose(best["img"])[0].permute(1, 2, 0).float().cpu().numpy()
            msg = f"{info['size'][1]}x{info['size'][0]}, level {info['level'] + 1}/{len(sizes)}"
            if "tile" in info:
                msg += f", tile {info['tile'] + 1}/{len(level_boxes[info['level']])}"
            yield Progress("optimize", step, total, losses=parts, preview=preview, message=msg)
            level_losses.append(parts.get("total", math.inf))
            if (cfg.tolerance > 0 and len(level_losses) > cfg.patience
                    and level_losses[-1 - cfg.patience] - level_losses[-1]
                    < cfg.tolerance * abs(level_losses[-1 - cfg.patience])):
                break  # converged
        return best

    x = None
    best = {"img": None, "parts": {}}
    for li, (hh, ww) in enumerate(sizes):
        final_level = li == len(sizes) - 1
        n_iter = cfg.iterations if final_level else cfg.coarse_iterations
        boxes = level_boxes[li]
        c = _resize(content_full, (hh, ww))
        with torch.no_grad():
            targets, style_level = [], []
            for s01, sw in style01:
                sh, sww = s01.shape[:2]
                k = cfg.style_scale * min(hh, ww) / min(sh, sww)
                st = torch.from_numpy(np.ascontiguousarray(s01.transpose(2, 0, 1)))[None].to(device)
                st = _resize(st, (max(16, round(sh * k)), max(16, round(sww * k))))
                style_level.append((st, sw))
                targets.append((style_grams(st, style_layers, feats, level_tile(*st.shape[-2:])), sw))
        if x is None:
            if cfg.init == "content":
                x0 = c.clone()
            elif cfg.init == "matched":
                x0 = match_colors(c, style_level)
            elif cfg.init == "style":
                x0 = _resize(torch.from_numpy(np.ascontiguousarray(style01[0][0].transpose(2, 0, 1)))[None].to(device),
                             (hh, ww))
            else:
                x0 = torch.rand((1, 3, hh, ww), generator=gen).to(device)
        else:
            x0 = _resize(x.detach(), (hh, ww))
        if len(boxes) == 1:
            with torch.no_grad():
                fc = feats(c)[content_layer].float()
            best = yield from run_box(x0, fc, targets, n_iter, {"level": li, "size": [hh, ww]}, lambda img: img)
            x = best["img"]
        else:
            # a tiled level: every tile starts from the upsampled coarser result (so the tiles agree) and
            # is matched to the global style statistics; finished tiles are blended with feathered overlaps
            acc = torch.zeros_like(x0)
            wsum = torch.zeros_like(x0[:, :1])

            def compose(img, box=None, wt=None):
                a, ws = acc, wsum
                if box is not None:
                    y0, y1, x0_, x1 = box
                    a, ws = acc.clone(), wsum.clone()
                    a[..., y0:y1, x0_:x1] += img * wt
                    ws[..., y0:y1, x0_:x1] += wt
                return torch.where(ws > 0, a / ws.clamp_min(1e-8), x0)

            for ti, box in enumerate(boxes):
                y0, y1, x0_, x1 = box
                wt = _feather(box, hh, ww, tile_overlap(level_tile(hh, ww))).to(device)
                with torch.no_grad():
                    fc = feats(c[..., y0:y1, x0_:x1].contiguous())[content_layer].float()
                best = yield from run_box(x0[..., y0:y1, x0_:x1].contiguous(), fc, targets, n_iter,
                                          {"level": li, "size": [hh, ww], "tile": ti},
                                          lambda img, b=box, w_=wt: compose(img, b, w_))
                acc[..., y0:y1, x0_:x1] += best["img"] * wt
                wsum[..., y0:y1, x0_:x1] += wt
                if flags["cancelled"] or flags["timed_out"]:
                    break
            x = compose(None)
            best = {**best, "img": x}
        if flags["cancelled"] or flags["timed_out"]:
            break
    cancelled, timed_out = flags["cancelled"], flags["timed_out"]
    final = best["img"]
    if tuple(final.shape[-2:]) != tuple(sizes[-1]):  # stopped at a coarse level: deliver the requested size
        final = _resize(final, sizes[-1])
    out01 = final[0].permute(1, 2, 0).float().cpu().numpy()
    oh, ow = out01.shape[:2]
    if cfg.preserve_color:
        orig = _resize(content_full, (oh, ow))[0].permute(1, 2, 0).cpu().numpy()
        out01 = blend_and_color(out01, orig, 1.0, True)
    a = None
    if alpha is not None:
        a = np.asarray(F.interpolate(torch.from_numpy(alpha.astype(np.float32))[None, None], size=(oh, ow),
                                     mode="nearest")[0, 0].numpy()).astype(alpha.dtype)
    data = from_unit(out01, layout, layout.out_dtype(None), a)
    meta = {"napari_fast_style": {
        "operation": "optimize", **{k: v for k, v in asdict(cfg).items()}, "style_blend": [w for _, w in pairs],
        "device": str(device), "precision": str(amp).replace("torch.", ""), "iterations_done": step,
        "cancelled": cancelled, "time_limit_reached": timed_out, "output_size": [oh, ow], "content_size": [h, w],
        "final_losses": best["parts"], "tiles": [len(b) for b in level_boxes],
    }}
    return OptimizeResult(data, cancelled, step, time.perf_counter() - t0, best["parts"], history, meta)


def optimize(content, styles, *, iterations: int = 300, size: Optional[int] = 512, style_weight: Optional[float] = None,
             preserve_color: bool = False, optimizer: str = "lbfgs", device: str = "auto", **kwargs) -> np.ndarray:
    """Gatys et al. optimisation; returns the stylized image (longer side ``size``) as a numpy array.

    ``styles``: one image, a list of images, or a list of ``(image, weight)`` pairs. Same dtype rules as
    :func:`stylize` (uint8 in -> uint8 out, else float32 in [0, 1]). ``network``: the VGG16 weights path
    (default ``$NAPARI_FAST_STYLE_VGG``) or a loaded extractor. Other keywords: see :class:`OptimizeConfig`.
    """
    call = {k: kwargs.pop(k) for k in ("network", "rgb", "contrast_limits", "cancel") if k in kwargs}
    cfg = OptimizeConfig(iterations=iterations, size=size, preserve_color=preserve_color, optimizer=optimizer,
                         device=device, **({"style_weight": style_weight} if style_weight is not None else {}),
                         **kwargs)
    return run_sync(optimize_iter(content, styles, cfg, **call)).data
