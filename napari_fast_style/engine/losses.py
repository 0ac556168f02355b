"""Perceptual losses (Gatys et al. 2016; Johnson et al. 2016) as typed functions + thin modules.

All losses are *relative*, so their values mean the same thing on any image size and any VGG weight
set, and they are the quantities ``shared/tools/style_metrics.py`` reports:

* ``gram(F) = F F^T / (C H W)`` per image;
* style loss at a layer ``= ||G(y) - G_s||_F^2 / ||G_s||_F^2`` (mean over layers, weights optional);
* content loss ``= ||phi(y) - phi(x)||^2 / ||phi(x)||^2``;
* total variation = mean squared difference of neighbouring pixels.

Gram matrices are always computed in float32 (or float64 if given), even under autocast: a bf16 Gram
loses the small differences the style loss is made of.
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch
import torch.nn as nn


def _upcast(t: torch.Tensor) -> torch.Tensor:
    """Half types to float32; float32 and float64 stay as they are."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


class _GramFn(torch.autograd.Function):
    """``F F^T`` for ``[B, C, N]`` (or ``F^T F`` for ``[B, N, C]``) with a one-product backward: the
    gradient ``(dG + dG^T) F`` instead of autograd's two products and their sum."""

    @staticmethod
    def forward(ctx, f, channels_last):
        ctx.save_for_backward(f)
        ctx.channels_last = channels_last
        return torch.bmm(f.transpose(1, 2), f) if channels_last else torch.bmm(f, f.transpose(1, 2))

    @staticmethod
    def backward(ctx, g):
        (f,) = ctx.saved_tensors
        g = g + g.transpose(1, 2)
        return (torch.bmm(f, g) if ctx.channels_last else torch.bmm(g, f)), None


def gram(features: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W] -> [B, C, C]``, normalised by ``C * H * W``."""
    b, c, h, w = features.shape
    cl = c > 1 and features.is_contiguous(memory_format=torch.channels_last) and not features.is_contiguous()
    f = features.permute(0, 2, 3, 1).reshape(b, h * w, c) if cl else features.reshape(b, c, h * w)
    f = _upcast(f)
    with torch.autocast(device_type=f.device.type, enabled=False):
        return _GramFn.apply(f, cl) / (c * h * w)


def style_loss(features: Mapping[str, torch.Tensor], target_grams: Mapping[str, torch.Tensor],
               layer_weights: Optional[Mapping[str, float]] = None, reduction: str = "mean") -> torch.Tensor:
    """Weighted mean over layers of the relative squared Gram error, averaged over the batch
    (``reduction="none"``: one value per image, ``[B]``).

    ``target_grams[name]`` is ``[C, C]`` (one style) or ``[B, C, C]`` (one target per image).
    """
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    total, wsum = 0.0, 0.0
    for name, g_s in target_grams.items():
        w = 1.0 if layer_weights is None else float(layer_weights.get(name, 0.0))
        if w == 0.0:
            continue
        g_y = gram(features[name])
        g_s = g_s.to(g_y.dtype)
        if g_s.dim() == 2:
            g_s = g_s.unsqueeze(0)
        num = ((g_y - g_s) ** 2).sum(dim=(1, 2))
        den = (g_s ** 2).sum(dim=(1, 2)).clamp_min(1e-20)
        total = total + w * (num / den)
        wsum += w
    if wsum == 0.0:
        raise ValueError("style_loss needs at least one layer with a non-zero weight")
    per_image = total / wsum
    return per_image if reduction == "none" else per_image.mean()


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``||phi(y) - phi(x)||^2 / ||phi(x)||^2`` per image, averaged over the batch."""
    y, x = _upcast(features), _upcast(target)
    dims = tuple(range(1, y.dim()))
    return (((y - x) ** 2).sum(dim=dims) / (x ** 2).sum(dim=dims).clamp_min(1e-20)).mean()


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between horizontally and vertically neighbouring pixels."""
    dy = image[..., 1:, :] - image[..., :-1, :]
    dx = image[..., :, 1:] - image[..., :, :-1]
    return (_upcast(dy) ** 2).mean() + (_upcast(dx) ** 2).mean()


class StyleLoss(nn.Module):
    """Module wrapper of :func:`style_loss` holding the target Gram matrices as buffers."""

    def __init__(self, target_grams: Mapping[str, torch.Tensor], layer_weights: Optional[Mapping[str, float]] = None):
        super().__init__()
        self.names = list(target_grams)
        for k, v in target_grams.items():
            self.register_buffer(f"g_{k}", v.detach().clone(), persistent=False)
        self.layer_weights = dict(layer_weights) if layer_weights else None

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        grams = {k: getattr(self, f"g_{k}") for k in self.names}
        return style_loss(features, grams, self.layer_weights)


class ContentLoss(nn.Module):
    def forward(self, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return content_loss(features, target)


class TVLoss(nn.Module):
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return tv_loss(image)
