"""Registry of ImageNet CNNs usable as fixed loss networks for Gatys-style optimisation.

Every extractor takes RGB in ``[0, 1]``, returns a dict of named taps, has frozen parameters, is in
eval mode, and has a state-dict layout identical to torchvision's model of the same name (minus the
classifier), so an official torchvision checkpoint loads strictly after dropping the keys that start
with one of ``spec.ignore_prefixes`` (see :func:`strip_prefixes`). Nothing here downloads or reads
files; ``torchvision_url`` is information for the loading code.

Default layers (see each module's docstring for the reasoning):

=========  ==================================================  ============
network    style layers                                        content
=========  ==================================================  ============
vgg16      relu1_1 relu2_1 relu3_1 relu4_1 relu5_1             relu4_2
vgg19      relu1_1 relu2_1 relu3_1 relu4_1 relu5_1 (Gatys)     relu4_2
alexnet    relu1 relu2 relu3 relu4 relu5                       relu4
googlenet  conv1 conv3 inception3a inception4a inception5a     inception4b
resnet50   relu layer1 layer2 layer3                           layer2
=========  ==================================================  ============
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Optional

import torch.nn as nn

from .alexnet import ALEXNET_TAPS, AlexNetFeatures
from .googlenet import GOOGLENET_TAPS, GoogLeNetFeatures
from .resnet import RESNET50_TAPS, ResNet50Features
from .vgg import VGG16_TAPS, VGG19_TAPS, VGGFeatures


@dataclass(frozen=True)
class LossNetworkSpec:
    """How to build one loss network and which of its taps to use by default."""

    name: str
    #: ``builder(taps, convention) -> nn.Module`` returning a dict of taps from RGB in [0, 1]
    builder: Callable[[Iterable[str], str], nn.Module]
    #: every tap name, in forward order
    taps: tuple[str, ...]
    style_layers: tuple[str, ...]
    content_layer: str
    #: official torchvision ImageNet weights for this architecture
    torchvision_url: str
    #: state-dict key prefixes to drop from a full torchvision checkpoint before strict loading
    ignore_prefixes: tuple[str, ...]

    @property
    def default_taps(self) -> tuple[str, ...]:
        """Default style layers plus the content layer, deduplicated, in forward order."""
        wanted = set(self.style_layers) | {self.content_layer}
        return tuple(t for t in self.taps if t in wanted)


def _vgg(arch: str) -> Callable[[Iterable[str], str], nn.Module]:
    def build(taps: Iterable[str], convention: str) -> nn.Module:
        return VGGFeatures(taps, convention=convention, arch=arch)

    build.__name__ = f"build_{arch}"
    return build


_GATYS_STYLE = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

LOSS_NETWORKS: dict[str, LossNetworkSpec] = {
    "vgg16": LossNetworkSpec(
        name="vgg16", builder=_vgg("vgg16"), taps=tuple(VGG16_TAPS),
        style_layers=_GATYS_STYLE, content_layer="relu4_2",
        torchvision_url="https://download.pytorch.org/models/vgg16-397923af.pth",
        ignore_prefixes=("classifier.",),
    ),
    "vgg19": LossNetworkSpec(
        name="vgg19", builder=_vgg("vgg19"), taps=tuple(VGG19_TAPS),
        style_layers=_GATYS_STYLE, content_layer="relu4_2",
        torchvision_url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
        ignore_prefixes=("classifier.",),
    ),
    "alexnet": LossNetworkSpec(
        name="alexnet", builder=AlexNetFeatures, taps=tuple(ALEXNET_TAPS),
        style_layers=("relu1", "relu2", "relu3", "relu4", "relu5"), content_layer="relu4",
        torchvision_url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        ignore_prefixes=("classifier.",),
    ),
    "googlenet": LossNetworkSpec(
        name="googlenet", builder=GoogLeNetFeatures, taps=tuple(GOOGLENET_TAPS),
        style_layers=("conv1", "conv3", "inception3a", "inception4a", "inception5a"),
        content_layer="inception4b",
        torchvision_url="https://download.pytorch.org/models/googlenet-1378be20.pth",
        ignore_prefixes=("fc.", "aux1.", "aux2."),
    ),
    "resnet50": LossNetworkSpec(
        name="resnet50", builder=ResNet50Features, taps=tuple(RESNET50_TAPS),
        style_layers=("relu", "layer1", "layer2", "layer3"), content_layer="layer2",
        torchvision_url="https://download.pytorch.org/models/resnet50-0676ba61.pth",
        ignore_prefixes=("fc.",),
    ),
}


def get_loss_network_spec(name: str) -> LossNetworkSpec:
    """The registry entry for ``name``; ValueError listing the known names otherwise."""
    try:
        return LOSS_NETWORKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss network {name!r}; known: {sorted(LOSS_NETWORKS)}") from None


def build_loss_network(name: str, taps: Optional[Iterable[str]] = None,
                       convention: str = "torchvision") -> nn.Module:
    """Build the (random-weight, frozen, eval-mode) extractor ``name`` with ``taps``.

    ``taps=None`` means the network's default style layers plus its content layer.
    """
    spec = get_loss_network_spec(name)
    return spec.builder(spec.default_taps if taps is None else tuple(taps), convention)


def strip_prefixes(state_dict: Mapping, prefixes: Iterable[str]) -> dict:
    """A copy of ``state_dict`` without the keys that start with any of ``prefixes``."""
    prefixes = tuple(prefixes)
    return {k: v for k, v in state_dict.items() if not k.startswith(prefixes)}
