"""GoogLeNet (Inception v1) feature extractor with named taps (a loss network for Gatys-style optimisation).

Module names are torchvision's ``googlenet()`` at the top level of this module (``conv1``,
``maxpool1``, ``conv2``, ``conv3``, ``maxpool2``, ``inception3a``, ``inception3b``, ``maxpool3``,
``inception4a`` .. ``inception4e``, ``maxpool4``, ``inception5a``, ``inception5b``), with
torchvision's ``BasicConv2d`` (``conv`` without bias + ``bn``, ``BatchNorm2d(eps=0.001)``, ReLU) and
``Inception`` blocks (``branch1`` .. ``branch4``; like torchvision, ``branch3`` uses a 3x3 conv where
the paper has 5x5). A torchvision GoogLeNet state dict (``googlenet-1378be20.pth``) therefore loads
with strict key matching once ``fc.*``, ``aux1.*`` and ``aux2.*`` are dropped (the auxiliary
classifiers are never built here). Only the modules up to the deepest requested tap are built, so a
truncated extractor accepts the matching prefix of such a state dict (``strict=False`` for the rest).

Taps are named after the module whose output they are: ``conv1``, ``conv2``, ``conv3``,
``inception3a`` .. ``inception5b`` (strides 2, 4, 4, 8, 8, 16 x 5, 32, 32).

Input is RGB in ``[0, 1]`` and goes through :class:`~src_models.vgg.Preprocess` (attribute
``preprocess``), by default the ``"torchvision"`` mean/std convention. torchvision's
``transform_input`` step is deliberately NOT reproduced here. Note that torchvision's own
``googlenet(pretrained=True)`` enables ``transform_input`` by default, which turns mean/std-normalised
input into ``(x - 0.5) / 0.5``: the official weights were ported from TensorFlow and expect that range.

BatchNorm layers are always in eval mode (running statistics): ``.train()`` is overridden so that
it never switches them to batch statistics.

Layers for style transfer: the original neural-style implementations (Gatys et al.; jcjohnson/
neural-style) define no GoogLeNet defaults. We take, like Gatys' ``relu{k}_1``, the first 3x3
feature map of each resolution stage for style: ``conv1, conv3, inception3a, inception4a,
inception5a`` (strides 2, 4, 8, 16, 32; ``conv2`` is a 1x1 reduction of ``conv1``'s features), and
``inception4b`` for content: about as many conv layers deep (11 on the longest path) as VGG19's
``relu4_2`` (10), the same "one block into the 4th stage" position.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._taps import FrozenBatchNorm, select_taps
from .vgg import Preprocess


class BasicConv2d(nn.Module):
    """torchvision's ``BasicConv2d``: conv (no bias) -> BatchNorm(eps=1e-3) -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """torchvision's ``Inception`` block (``branch3`` is 3x3, as in torchvision)."""

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int,
                 ch5x5red: int, ch5x5: int, pool_proj: int):
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, kernel_size=1),
            BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, kernel_size=1),
            BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


def _stem_and_blocks() -> list[tuple[str, Callable[[], nn.Module]]]:
    """(module name, factory) in forward order, exactly torchvision's ``GoogLeNet.__init__``."""
    pool = lambda k=3: (lambda: nn.MaxPool2d(k, stride=2, ceil_mode=True))  # noqa: E731
    inc = lambda *a: (lambda: Inception(*a))  # noqa: E731
    return [
        ("conv1", lambda: BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)),
        ("maxpool1", pool()),
        ("conv2", lambda: BasicConv2d(64, 64, kernel_size=1)),
        ("conv3", lambda: BasicConv2d(64, 192, kernel_size=3, padding=1)),
        ("maxpool2", pool()),
        ("inception3a", inc(192, 64, 96, 128, 16, 32, 32)),
        ("inception3b", inc(256, 128, 128, 192, 32, 96, 64)),
        ("maxpool3", pool()),
        ("inception4a", inc(480, 192, 96, 208, 16, 48, 64)),
        ("inception4b", inc(512, 160, 112, 224, 24, 64, 64)),
        ("inception4c", inc(512, 128, 128, 256, 24, 64, 64)),
        ("inception4d", inc(512, 112, 144, 288, 32, 64, 64)),
        ("inception4e", inc(528, 256, 160, 320, 32, 128, 128)),
        ("maxpool4", pool(2)),
        ("inception5a", inc(832, 256, 160, 320, 32, 128, 128)),
        ("inception5b", inc(832, 384, 192, 384, 48, 128, 128)),
    ]


_LAYERS = _stem_and_blocks()
_ORDER = [name for name, _ in _LAYERS]

#: tap names in forward order -> output channels
GOOGLENET_CHANNELS: dict[str, int] = {
    "conv1": 64, "conv2": 64, "conv3": 192,
    "inception3a": 256, "inception3b": 480,
    "inception4a": 512, "inception4b": 512, "inception4c": 512, "inception4d": 528, "inception4e": 832,
    "inception5a": 832, "inception5b": 1024,
}
#: tap name -> position of its module in forward order
GOOGLENET_TAPS: dict[str, int] = {t: _ORDER.index(t) for t in GOOGLENET_CHANNELS}


class GoogLeNetFeatures(FrozenBatchNorm, nn.Module):
    """Fixed GoogLeNet returning a dict of the requested taps (``conv1`` .. ``inception5b``)."""

    def __init__(self, taps: Iterable[str] = ("conv1", "conv3", "inception3a", "inception4a",
                                              "inception4b", "inception5a"),
                 convention: str = "torchvision"):
        super().__init__()
        self.taps = select_taps(taps, GOOGLENET_TAPS, "GoogLeNet")
        self.preprocess = Preprocess(convention)
        last = max(GOOGLENET_TAPS[t] for t in self.taps)
        self._order = _ORDER[: last + 1]
        for name, make in _LAYERS[: last + 1]:
            self.add_module(name, make())
        self.requires_grad_(False)
        self.eval()

    def forward(self, rgb01: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.preprocess(rgb01)
        wanted = set(self.taps)
        out = {}
        for name in self._order:
            x = getattr(self, name)(x)
            if name in wanted:
                out[name] = x
        return out
