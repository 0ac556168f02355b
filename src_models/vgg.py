"""VGG16/VGG19 feature extractors with named taps, the fixed loss networks of Gatys et al. and Johnson et al.

The module layout is torchvision's ``vgg16().features`` (indices 0..30) or ``vgg19().features``
(indices 0..36), so torchvision state dicts (full classifier models or features only) and the
Oxford/Caffe conversion load unchanged. Input normalisation is a module of its own because the two
weight sets expect different inputs:

* ``caffe``: BGR, 0..255, minus the ImageNet mean [103.939, 116.779, 123.68] (the original Oxford
  weights; Johnson et al. and Gatys et al. used these);
* ``torchvision``: RGB, 0..1, minus mean / std [0.485, 0.456, 0.406] / [0.229, 0.224, 0.225].

The network always takes RGB in ``[0, 1]``; constants are non-persistent buffers so they follow
``.to(device)`` but never enter a state dict.

Layers the original implementations use:

* VGG19 (Gatys et al. 2016, jcjohnson/neural-style defaults): style ``relu1_1, relu2_1, relu3_1,
  relu4_1, relu5_1``; content ``relu4_2``.
* VGG16 for Gatys-style optimisation: the same names (neural-style accepts them for VGG16 too).
  Johnson et al. 2016 (feed-forward training) use style ``relu1_2, relu2_2, relu3_3, relu4_3`` and
  content ``relu2_2``; this package's trainer keeps its own defaults.
"""
from __future__ import annotations

from typing import Iterable, Optional

import torch
import torch.nn as nn

from ._taps import SequentialTaps, select_taps

#: torchvision ``vgg16().features`` configuration
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
#: torchvision ``vgg19().features`` configuration
VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
             512, 512, 512, 512, "M"]


def _taps(cfg: list = VGG16_CFG) -> dict[str, int]:
    taps, idx, block, conv = {}, 0, 1, 0
    for v in cfg:
        if v == "M":
            idx, block, conv = idx + 1, block + 1, 0
        else:
            conv += 1
            taps[f"relu{block}_{conv}"] = idx + 1  # each conv is followed by its ReLU
            idx += 2
    return taps


#: tap name -> index of its ReLU in ``features``
VGG16_TAPS: dict[str, int] = _taps(VGG16_CFG)
#: tap name (``relu1_1`` .. ``relu5_4``) -> index of its ReLU in ``vgg19().features``
VGG19_TAPS: dict[str, int] = _taps(VGG19_CFG)

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


def _vgg_features(cfg: list, upto: Optional[int] = None) -> nn.Sequential:
    layers: list[nn.Module] = []
    c = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
            c = v
    if upto is not None:
        layers = layers[: upto + 1]
    return nn.Sequential(*layers)


def vgg16_features(upto: Optional[int] = None) -> nn.Sequential:
    """torchvision's ``vgg16().features`` layout (optionally truncated after index ``upto``)."""
    return _vgg_features(VGG16_CFG, upto)


def vgg19_features(upto: Optional[int] = None) -> nn.Sequential:
    """torchvision's ``vgg19().features`` layout (optionally truncated after index ``upto``)."""
    return _vgg_features(VGG19_CFG, upto)


_ARCHS = {"vgg16": (VGG16_TAPS, vgg16_features), "vgg19": (VGG19_TAPS, vgg19_features)}


class VGGFeatures(SequentialTaps):
    """Fixed VGG16 (or VGG19, ``arch="vgg19"``) returning a dict of the requested taps
    (``relu1_2``, ``relu2_2``, ...).

    Only the layers up to the deepest tap are built. Parameters never require grad; gradients still
    flow to the input, which is what perceptual losses and Gatys optimisation need.
    """

    def __init__(self, taps: Iterable[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
                 convention: str = "caffe", arch: str = "vgg16"):
        super().__init__()
        if arch not in _ARCHS:
            raise ValueError(f"unknown VGG architecture {arch!r}; choose one of {sorted(_ARCHS)}")
        known, make = _ARCHS[arch]
        self.arch = arch
        self.taps = select_taps(taps, known, arch.upper())
        self._at = {known[t]: t for t in self.taps}
        self.preprocess = Preprocess(convention)
        self.features = make(max(self._at))
        self.requires_grad_(False)
        self.eval()
