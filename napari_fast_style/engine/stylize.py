"""Stylize images and stacks with a trained style network (Johnson et al. 2016).

Strength blends the stylized image with the original; *preserve colour* keeps the original's
chrominance and takes only the luminance from the stylized image (luminance-only transfer, Gatys,
Bethge, Hertzmann & Shechtman 2016, in YIQ); multi-style models blend styles by weights.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Generator, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from .convert import ImageError, PlaneReader, describe, from_unit, read_plane
from .device import resolve_device, resolve_precision
from .models import ModelEntry, load_model
from .progress import CancelToken, Progress, run_sync
from .tiling import padded_size, run_planes

log = logging.getLogger(__name__)

MIN_SIDE = 16

_RGB2YIQ = np.array([[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]],
                    dtype=np.float32)
_YIQ2RGB = np.linalg.inv(_RGB2YIQ).astype(np.float32)


@dataclass(frozen=True)
class StylizeConfig:
    """Settings of one stylize run (validated on construction)."""

    strength: float = 1.0
    preserve_color: bool = False
    style_weights: Optional[tuple] = None  # one weight per style of a multi-style model
    tile: Optional[int] = None  # tile core size in pixels; None: automatic (untiled when it fits)
    share_stats: bool = False  # one set of instance-norm statistics for all planes of a stack
    device: str = "auto"
    precision: str = "auto"
    memory_budget: Optional[int] = None
    out_dtype: Optional[str] = None  # None/"auto": uint8 -> uint8, else float32; "input": input dtype

    def __post_init__(self):
        if not 0.0 <= float(self.strength) <= 1.0:
            raise ValueError(f"strength must be between 0 and 1, got {self.strength}")
        if self.tile is not None and int(self.tile) < 32:
            raise ValueError(f"tile must be at least 32 pixels, got {self.tile}")
        if self.style_weights is not None:
            w = np.asarray(self.style_weights, dtype=float)
            if w.ndim != 1 or (w < 0).any() or w.sum() <= 0:
                raise ValueError("style weights must be non-negative with a positive sum")


@dataclass
class StylizeResult:
    data: np.ndarray
    cancelled: bool
    planes_done: int
    planes_total: int
    seconds: float
    metadata: dict = field(default_factory=dict)


def blend_and_color(stylized01: np.ndarray, original01: np.ndarray, strength: float, preserve_color: bool) -> np.ndarray:
    """Post-processing in [0, 1] RGB: luminance-only transfer, then blend with the original."""
    out = stylized01
    if preserve_color:
        y = stylized01 @ _RGB2YIQ[0]
        iq = original01 @ _RGB2YIQ[1:].T
        out = np.concatenate([y[..., None], iq], axis=-1) @ _YIQ2RGB.T
    if strength < 1.0:
        out = strength * out + (1.0 - strength) * original01
    return out


def _style_vector(entry: ModelEntry, n_styles: int, weights) -> Optional[torch.Tensor]:
    if n_styles == 1:
        return None
    if weights is None:
        w = np.ones(n_styles)
    elif isinstance(weights, Mapping):
        names = list(entry.styles)
        unknown = [k for k in weights if k not in names]
        if unknown:
            raise ValueError(f"unknown styles {unknown}; this model holds {names}")
        w = np.array([float(weights.get(n, 0.0)) for n in names])
    else:
        w = np.asarray(weights, dtype=float)
        if w.shape != (n_styles,):
            raise ValueError(f"this model holds {n_styles} styles; got {w.size} weights")
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError("style weights must be non-negative with a positive sum")
    return torch.tensor(w / w.sum(), dtype=torch.float32)


def stylize_iter(
    image,
    model: Union[str, ModelEntry, object],
    config: Optional[StylizeConfig] = None,
    *,
    rgb: Optional[bool] = None,
    contrast_limits: Optional[Sequence[float]] = None,
    plane: Optional[tuple] = None,
    style_weights=None,
    net: Optional[torch.nn.Module] = None,
    cancel: Optional[CancelToken] = None,
) -> Generator[Progress, None, StylizeResult]:
    """Stylize every plane of ``image`` (or only ``plane``, an index over the leading axes).

    Yields :class:`Progress` per tile/plane and returns a :class:`StylizeResult`. The input is never
    modified. A cancelled run returns the planes it finished; the others hold the unstylized input.
    ``net``: an already loaded network for ``model`` (callers may cache it).
    """
    cfg = config or StylizeConfig()
    t0 = time.perf_counter()
    layout = describe(image, rgb=rgb, limits=contrast_limits)
    h, w = layout.spatial
    if min(h, w) < MIN_SIDE:
        raise ImageError(f"image is {h}x{w} pixels; stylize needs at least {MIN_SIDE}x{MIN_SIDE}")
    device = resolve_device(cfg.device)
    dtype = resolve_precision(cfg.precision, device)
    if net is None:
        net, entry = load_model(model, kind="style", device=device)
    else:
        from .models import find_model

        entry = find_model(model, kind="style")
        net = net.to(device)
    value_range = float(entry.metadata.get("value_range", 255.0))
    sw = _style_vector(entry, net.n_styles, style_weights if style_weights is not None else cfg.style_weights)

    indices = layout.plane_indices(plane)
    plane = indices[0] if plane is not None else None
    out_shape = (() if plane is not None else layout.leading) + (h, w, layout.out_channels())
    out_dtype = layout.out_dtype(cfg.out_dtype)
    out = np.empty(out_shape, dtype=out_dtype)
    readers = [PlaneReader(read_plane(image, layout, idx), layout) for idx in indices]
    written = np.zeros(len(indices), dtype=bool)

    def out_view(i):
        return out if plane is not None else out[indices[i]]

    def sink(i, region, y):
        y0, y1, x0, x1 = region
        r = readers[i]
        raw = r.raw(y0, y1, x0, x1)
        orig = r.unit(raw)
        styl = (y[0].permute(1, 2, 0).numpy() / value_range).astype(np.float32)
        res = blend_and_color(styl, orig, cfg.strength, cfg.preserve_color)
        alpha = raw[..., 3] if layout.has_alpha else None
        out_view(i)[y0:y1, x0:x1] = from_unit(res, layout, out_dtype, alpha)

    def passthrough(i):
        r = readers[i]
        raw = r.raw(0, h, 0, w)
        out_view(i)[...] = from_unit(r.unit(raw), layout, out_dtype, raw[..., 3] if layout.has_alpha else None)

    done = 0
    if cfg.strength == 0.0:
        for i in range(len(readers)):
            if cancel is not None and cancel.cancelled:
                break
            passthrough(i)
            done += 1
            yield Progress("stylize", done, len(readers))
    else:
        done = yield from run_planes(net, readers, sink, device=device, dtype=dtype, style_weights=sw,
                                     tile=cfg.tile, share_stats=cfg.share_stats,
                                     memory_budget=cfg.memory_budget, cancel=cancel)
    written[:done] = True
    for i in np.flatnonzero(~written):  # cancelled: unfinished planes show the input, never garbage
        passthrough(int(i))
    meta = {
        "napari_fast_style": {
            "operation": "stylize", "model": entry.name, "display_name": entry.display_name,
            "styles": list(entry.styles), "arch": entry.arch,
            **{k: v for k, v in asdict(cfg).items() if k not in ("memory_budget", "style_weights")},
            "style_weights": None if sw is None else [round(float(v), 4) for v in sw],  # the weights used
            "device": str(device), "precision": str(dtype).replace("torch.", ""),
            "plane": list(plane) if plane is not None else None,
            "planes_done": int(done), "planes_total": len(indices), "cancelled": done < len(indices),
            "padded_size": list(padded_size(h, w, net.factor)),
        }
    }
    return StylizeResult(out, done < len(indices), int(done), len(indices), time.perf_counter() - t0, meta)


def stylize(image, model, *, strength: float = 1.0, preserve_color: bool = False, tile: Optional[int] = None,
            device: str = "auto", **kwargs) -> np.ndarray:
    """Stylize an image with a trained style model and return the result as a numpy array.

    ``image``: HxW, HxWx3 or HxWx4 (or a stack with leading axes); uint8 comes back as uint8, other
    dtypes as float32 in [0, 1] (RGB; grey input becomes RGB, alpha is carried through).
    ``model``: a name from :func:`list_models` or a path to a ``.safetensors`` model.
    Other keyword arguments: ``preserve_color``, ``style_weights``, ``share_stats``, ``precision``,
    ``memory_budget``, ``out_dtype`` (see :class:`StylizeConfig`), ``rgb``, ``contrast_limits``, ``plane``.
    """
    call = {k: kwargs.pop(k) for k in ("rgb", "contrast_limits", "plane", "net", "cancel") if k in kwargs}
    sw = kwargs.pop("style_weights", None)
    cfg = StylizeConfig(strength=strength, preserve_color=preserve_color, tile=tile, device=device, **kwargs)
    return run_sync(stylize_iter(image, model, cfg, style_weights=sw, **call)).data
