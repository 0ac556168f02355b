"""AlexNet feature extractor with named taps (a loss network for Gatys-style optimisation).

The module layout is torchvision's ``alexnet().features`` under the attribute ``features``, exactly
as :class:`~src_models.vgg.VGGFeatures` wraps VGG, so a torchvision AlexNet state dict
(``alexnet-owt-7be5be79.pth``) loads with strict key matching once its ``classifier.*`` keys are
dropped. Taps ``relu1`` .. ``relu5`` are the outputs of the ReLU after each of the five convolutions
(``features`` indices 1, 4, 7, 9, 11). Input is RGB in ``[0, 1]``; :class:`~src_models.vgg.Preprocess`
maps it to the weights' convention (torchvision weights: ``"torchvision"``).

Layers for style transfer: the neural-style implementations (Gatys et al.; jcjohnson/neural-style)
define no AlexNet defaults (jcjohnson/neural-style used the Caffe/NIN models with every ReLU stage for
style). We use every conv stage for style, ``relu1 .. relu5`` (Gatys' "one layer per stage" rule;
AlexNet only has five convolutions), and ``relu4`` for content: the second conv of the last
(stride-16) stage, the analogue of VGG's ``relu4_2``, deep enough to ignore texture while ``relu5``
would discard more spatial layout.
"""
from __future__ import annotations

from typing import Iterable

import torch.nn as nn

from ._taps import SequentialTaps, select_taps
from .vgg import Preprocess

#: tap name -> index of its ReLU in torchvision's ``alexnet().features``
ALEXNET_TAPS: dict[str, int] = {"relu1": 1, "relu2": 4, "relu3": 7, "relu4": 9, "relu5": 11}
#: output channels of each tap
ALEXNET_CHANNELS: dict[str, int] = {"relu1": 64, "relu2": 192, "relu3": 384, "relu4": 256, "relu5": 256}


def alexnet_features(upto: int | None = None) -> nn.Sequential:
    """torchvision's ``alexnet().features`` layout (optionally truncated after index ``upto``)."""
    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    ]
    if upto is not None:
        layers = layers[: upto + 1]
    return nn.Sequential(*layers)


class AlexNetFeatures(SequentialTaps):
    """Fixed AlexNet returning a dict of the requested taps (``relu1`` .. ``relu5``).

    Only the layers up to the deepest tap are built. Parameters never require grad; gradients still
    flow to the input.
    """

    def __init__(self, taps: Iterable[str] = ("relu1", "relu2", "relu3", "relu4", "relu5"),
                 convention: str = "torchvision"):
        super().__init__()
        self.taps = select_taps(taps, ALEXNET_TAPS, "AlexNet")
        self._at = {ALEXNET_TAPS[t]: t for t in self.taps}
        self.preprocess = Preprocess(convention)
        self.features = alexnet_features(max(self._at))
        self.requires_grad_(False)
        self.eval()
