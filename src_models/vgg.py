"""VGG16 feature extractor with named taps, the fixed loss network of Gatys et al. and Johnson et al.

The module layout is torchvision's ``vgg16().features`` (indices 0..30), so torchvision state dicts
(full classifier models or features only) and the Oxford/Caffe conversion load unchanged. Input
normalisation is a module of its own because the two weight sets expect different inputs:

* ``caffe``: BGR, 0..255, minus the ImageNet mean [103.939, 116.779, 123.68] (the original Oxford
  weights; Johnson et al. and Gatys et al. used these);
* ``torchvision``: RGB, 0..1, minus mean / std [0.485, 0.456, 0.406] / [0.229, 0.224, 0.225].

The network always takes RGB in ``[0, 1]``; constants are non-persistent buffers so they follow
``.to(device)`` but never enter a state dict.
"""
from __future__ import annotations

from typing import Iterable, Optional

import torch
import torch.nn as nn

#: torchvision ``vgg16().features`` configuration
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]

def _taps() -> dict[str, int]:
    taps, idx, block, conv = {}, 0, 1, 0
    for v in VGG16_CFG:
        if v == "M":
            idx, block, conv = idx + 1, block + 1, 0
        else:
            conv += 1
            taps[f"relu{block}_{conv}"] = idx + 1  # each conv is followed by its ReLU
            idx += 2
    return taps


#: tap name -> index of its ReLU in ``features``
VGG16_TAPS: dict[str, int] = _taps()

CONVENTIONS = {
    "caffe": dict(bgr=True, scale=255.0, mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0)),
    "torchvision": dict(bgr=False, scale=1.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
}


class Preprocess(nn.Module):
    """RGB in [0, 1] -> the input convention a set of VGG weights was trained with."""

    def __init__(self, convention: str = "caffe"):
        super().__init__()
        if convention not in CONVENTIONS:
            raise ValueError(f"unknown VGG input convention {convention!r}; choose one of {sorted(CONVENTIONS)}")
        c = CONVENTIONS[convention]
        self.convention = convention
        self.bgr = c["bgr"]
        self.scale = c["scale"]
        self.register_buffer("mean", torch.tensor(c["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(c["std"]).view(1, 3, 1, 1), persistent=False)

    def forward(self, rgb01: torch.Tensor) -> torch.Tensor:
        x = rgb01.flip(1) if self.bgr else rgb01
        return (x * self.scale - self.mean.to(x.dtype)) / self.std.to(x.dtype)


def vgg16_features(upto: Optional[int] = None) -> nn.Sequential:
    """torchvision's ``vgg16().features`` layout (optionally truncated after index ``upto``)."""
    layers: list[nn.Module] = []
    c = 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
            c = v
    if upto is not None:
        layers = layers[: upto + 1]
    return nn.Sequential(*layers)


class VGGFeatures(nn.Module):
    """Fixed VGG16 returning a dict of the requested taps (``relu1_2``, ``relu2_2``, ...).

    Only the layers up to the deepest tap are built. Parameters never require grad; gradients still
    flow to the input, which is what perceptual losses and Gatys optimisation need.
    """

    def __init__(self, taps: Iterable[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
                 convention: str = "caffe"):
        super().__init__()
        taps = list(taps)
        unknown = [t for t in taps if t not in VGG16_TAPS]
        if unknown or not taps:
            raise ValueError(f"unknown VGG16 taps {unknown}; known: {list(VGG16_TAPS)}")
        self.taps = sorted(set(taps), key=VGG16_TAPS.__getitem__)
        self._at = {VGG16_TAPS[t]: t for t in self.taps}
        self.preprocess = Preprocess(convention)
        self.features = vgg16_features(max(self._at))
        self.requires_grad_(False)
        self.eval()

    def forward(self, rgb01: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.preprocess(rgb01)
        out = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._at:
                out[self._at[i]] = x
        return out
