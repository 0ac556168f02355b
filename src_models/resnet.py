"""ResNet-50 feature extractor with named taps (a loss network for Gatys-style optimisation).

Module names are torchvision's ``resnet50()`` at the top level of this module (``conv1``, ``bn1``,
``relu``, ``maxpool``, ``layer1`` .. ``layer4``; ``Bottleneck`` blocks with ``conv1/bn1``,
``conv2/bn2`` (the strided 3x3, "ResNet v1.5"), ``conv3/bn3`` and ``downsample.0/.1``), so a
torchvision ResNet-50 state dict (``resnet50-0676ba61.pth``, or the V2 weights) loads with strict
key matching once ``fc.*`` is dropped. Only the stages up to the deepest requested tap are built.

Taps: ``relu`` (stem, after conv1/bn1/relu, stride 2, 64 ch), ``layer1`` (stride 4, 256 ch),
``layer2`` (stride 8, 512 ch), ``layer3`` (stride 16, 1024 ch), ``layer4`` (stride 32, 2048 ch).
Input is RGB in ``[0, 1]`` through :class:`~src_models.vgg.Preprocess` (attribute ``preprocess``,
``"torchvision"`` convention by default).

BatchNorm layers are always in eval mode (running statistics): ``.train()`` is overridden so that
it never switches them to batch statistics.

Layers for style transfer: the original neural-style implementations define no ResNet defaults
(and ResNets are known to transfer style worse than VGG, partly because their deep activations are
peaky / low-entropy, Wang et al. CVPR 2021). We take, like Gatys' one-layer-per-stage rule, the
stage outputs ``relu, layer1, layer2, layer3`` for style (``layer4``, at stride 32 and very
class-specific, adds little texture information and would cost most of the parameters) and
``layer2`` for content: stride 8, the resolution of VGG19's ``relu4_2``, and already ~22 conv
layers deep.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn

from ._taps import FrozenBatchNorm, select_taps
from .vgg import Preprocess


class Bottleneck(nn.Module):
    """torchvision's ``Bottleneck`` (expansion 4, stride on the 3x3 conv)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _make_layer(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes * Bottleneck.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
            nn.BatchNorm2d(planes * Bottleneck.expansion),
        )
    layers = [Bottleneck(inplanes, planes, stride, downsample)]
    layers += [Bottleneck(planes * Bottleneck.expansion, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


#: ResNet-50: (planes, blocks, stride) of layer1 .. layer4
RESNET50_LAYERS = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))
#: tap names in forward order -> output channels
RESNET50_CHANNELS: dict[str, int] = {"relu": 64, "layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048}
#: tap name -> stage index (0 = stem)
RESNET50_TAPS: dict[str, int] = {t: i for i, t in enumerate(RESNET50_CHANNELS)}


class ResNet50Features(FrozenBatchNorm, nn.Module):
    """Fixed ResNet-50 returning a dict of the requested taps (``relu``, ``layer1`` .. ``layer4``)."""

    def __init__(self, taps: Iterable[str] = ("relu", "layer1", "layer2", "layer3"),
                 convention: str = "torchvision"):
        super().__init__()
        self.taps = select_taps(taps, RESNET50_TAPS, "ResNet-50")
        self.preprocess = Preprocess(convention)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._depth = max(RESNET50_TAPS[t] for t in self.taps)
        inplanes = 64
        for i, (planes, blocks, stride) in enumerate(RESNET50_LAYERS[: self._depth], start=1):
            self.add_module(f"layer{i}", _make_layer(inplanes, planes, blocks, stride))
            inplanes = planes * Bottleneck.expansion
        self.requires_grad_(False)
        self.eval()

    def forward(self, rgb01: torch.Tensor) -> dict[str, torch.Tensor]:
        wanted = set(self.taps)
        out = {}
        x = self.relu(self.bn1(self.conv1(self.preprocess(rgb01))))
        if "relu" in wanted:
            out["relu"] = x
        if self._depth == 0:
            return out
        x = self.maxpool(x)
        for i in range(1, self._depth + 1):
            x = getattr(self, f"layer{i}")(x)
            if f"layer{i}" in wanted:
                out[f"layer{i}"] = x
        return out
