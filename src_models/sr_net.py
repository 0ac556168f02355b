"""Feed-forward super-resolution network (Johnson, Alahi & Fei-Fei 2016, section 4), x4 and x8.

Johnson et al. trained their SR networks with a feature-reconstruction (perceptual) loss; the same
network trained with a pixel loss is the ``fidelity`` variant. The layout follows theirs: a wide
first convolution and residual blocks at *low* resolution, then ``log2(scale)`` learned x2
upsampling steps and a last convolution to 3 channels. Input and output are RGB in ``[0, 1]``; the
output is not clamped here (the engine's converter does that).

Design choices, made where they matter:

* **No normalisation.** Batch norm makes the output depend on the batch, and instance norm on the
  whole image: both remove the absolute intensities SR must keep (EDSR, Lim et al. 2017, dropped
  batch norm from SR networks for exactly this and got better results), and instance norm would make
  tiled inference inexact. Without it every output pixel depends only on the input pixels within
  :attr:`SRNet.receptive_radius`, so tiles with that much halo give exactly the untiled result.
* **Global skip of the interpolated input** (``skip="bicubic"``, or ``"nearest"``): the network
  predicts only the residual between the interpolation and the sharp image (VDSR, Kim et al. 2016:
  residual learning converges far faster), and its last convolution starts at zero, so an untrained
  network *is* bicubic (or nearest) interpolation: the intensity scale is right from step 0 and
  training only adds detail. ``bicubic`` is the usual baseline; ``nearest`` keeps every output pixel
  a copy of its input pixel plus the learned correction (no interpolation overshoot).
* **Reflection padding** (the :class:`~src_models.transformer_net.ConvLayer` of the style network):
  zero padding darkens the border.
* **Pixel shuffle (sub-pixel convolution, Shi et al. 2016) for the learned x2 steps**, see
  :class:`UpsampleStep`; the first upsampling convolution of each step is ICNR-initialised (Aitken et
  al. 2017), so the steps start as nearest-neighbour upsampling and print no checkerboard.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .transformer_net import ConvLayer

SCALES = (4, 8)
SKIPS = ("bicubic", "nearest")

#: Named sizes. ``standard``: Johnson et al.'s width (64 channels) with 8 residual blocks (they used
#: 4 with batch norm; EDSR-style blocks without norm need a few more); ``light``: 32 channels and 4
#: blocks, ~8x fewer multiply-adds, for training and running on laptop CPUs.
SR_CONFIGS: dict[str, dict] = {
    "standard": dict(channels=64, n_res=8),
    "light": dict(channels=32, n_res=4),
}


def default_up_channels(channels: int, n_up: int) -> tuple[int, ...]:
    """Width after each x2 step: halved per step, at least 16. Each step then costs about the same per
    *input* pixel, instead of 4x more than the previous one at constant width."""
    out, c = [], channels
    for _ in range(n_up):
        c = max(16, c // 2)
        out.append(c)
    return tuple(out)


class SRResidualBlock(nn.Module):
    """conv3x3 - ReLU - conv3x3 with an identity shortcut and no normalisation (EDSR, Lim et al. 2017)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3)
        self.conv2 = ConvLayer(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class UpsampleStep(nn.Module):
    """Learned x2 upsampling: a 3x3 convolution at the *input* resolution to ``4 * cout`` channels,
    rearranged into ``cout`` channels at twice the resolution (pixel shuffle), then ReLU.

    Why pixel shuffle and not nearest upsampling + convolution (the style network's decoder): for the
    same multiply-adds per output pixel, the sub-pixel convolution's 3x3 kernel covers 3x3 *input*
    pixels (6x6 output pixels) instead of 1.5x1.5, and nothing wider than the input is ever held at
    the higher resolution, which matters at x8 on a CPU. Like nearest+conv - and unlike a strided
    transposed convolution - every output pixel gets exactly one kernel, with no uneven overlap
    (Odena et al. 2016). ICNR initialisation (the 4 sub-pixel kernels of each output channel start
    equal, Aitken et al. 2017) makes the step start as nearest upsampling + convolution, so it does
    not start with a checkerboard either.
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvLayer(cin, cout * 4, 3)
        with torch.no_grad():  # ICNR
            base = nn.Conv2d(cin, cout, 3)
            self.conv.conv2d.weight.copy_(base.weight.repeat_interleave(4, dim=0))
            self.conv.conv2d.bias.copy_(base.bias.repeat_interleave(4, dim=0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(F.pixel_shuffle(self.conv(x), 2))


class SRNet(nn.Module):
    """First conv (``kernel_first``) - residual blocks (long skip) - log2(scale) x2 pixel-shuffle
    steps - last conv (``kernel_last``) to RGB, plus the ``skip``-interpolated input.

    ``[B, 3, h, w]`` in ``[0, 1]`` -> ``[B, 3, scale*h, scale*w]`` (not clamped). Any input size works.
    """

    def __init__(
        self,
        scale: int = 4,
        channels: int = 64,
        n_res: int = 8,
        kernel_first: int = 9,
        kernel_last: int = 3,
        up_channels: Optional[Sequence[int]] = None,
        skip: str = "bicubic",
    ):
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale}")
        if skip not in SKIPS:
            raise ValueError(f"skip must be one of {SKIPS}, got {skip!r}")
        if channels < 1 or n_res < 0 or kernel_first % 2 == 0 or kernel_last % 2 == 0:
            raise ValueError("channels >= 1, n_res >= 0 and odd kernel sizes are required")
        n_up = int(math.log2(scale))
        up = tuple(int(c) for c in (up_channels or default_up_channels(channels, n_up)))
        if len(up) != n_up or min(up) < 1:
            raise ValueError(f"up_channels needs {n_up} positive widths for x{scale}, got {up}")
        self.config = dict(scale=int(scale), channels=int(channels), n_res=int(n_res),
                           kernel_first=int(kernel_first), kernel_last=int(kernel_last), up_channels=up,
                           skip=skip)
        self.scale = int(scale)
        self.skip = skip
        self.head = ConvLayer(3, channels, kernel_first)
        self.body = nn.Sequential(*(SRResidualBlock(channels) for _ in range(n_res)))
        cin, ups = channels, []
        for c in up:
            ups.append(UpsampleStep(cin, c))
            cin = c
        self.up = nn.Sequential(*ups)
        self.tail = ConvLayer(cin, 3, kernel_last)
        with torch.no_grad():  # start as the skip alone (see the module docstring)
            self.tail.conv2d.weight.zero_()
            self.tail.conv2d.bias.zero_()
        # influence radius in input (LR) pixels: convs at LR, each x2 step's 3x3 conv at its own
        # resolution, the last conv at HR, and the bicubic skip's 2-pixel support; +1 for the sub-pixel
        # position of an HR pixel inside its LR parent
        r = kernel_first // 2 + 2 * n_res + sum(1 / 2 ** i for i in range(n_up)) + (kernel_last // 2) / scale
        self.receptive_radius = int(math.ceil(max(r, 2.0 if skip == "bicubic" else 0.0))) + 1

    def upsample_input(self, x: torch.Tensor) -> torch.Tensor:
        """The global skip: the input interpolated to the output size."""
        if self.skip == "nearest":
            return F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.head(x - 0.5)
        f = f + self.body(f)  # long skip over the residual blocks
        return self.upsample_input(x) + self.tail(self.up(f))


def sr_net(name: str = "standard", scale: int = 4, **overrides) -> SRNet:
    """Build a named size (``standard`` or ``light``) for a scale."""
    if name not in SR_CONFIGS:
        raise ValueError(f"unknown SR configuration {name!r}; choose one of {sorted(SR_CONFIGS)}")
    return SRNet(scale=scale, **{**SR_CONFIGS[name], **overrides})
