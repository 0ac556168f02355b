"""Pure ``torch.nn`` network definitions, training recipes and bundled weights.

Nothing in this package imports napari, Qt or magicgui, and nothing here reads files or downloads
weights at construction time: loading lives in :mod:`napari_fast_style.engine`.
"""
from pathlib import Path

from .transformer_net import CONFIGS, NormContext, TransformerNet, transformer_net
from .vgg import VGG16_TAPS, Preprocess, VGGFeatures
from .vgg import VGG19_CFG, VGG19_TAPS, vgg19_features
from .alexnet import ALEXNET_TAPS, AlexNetFeatures
from .googlenet import GOOGLENET_TAPS, GoogLeNetFeatures
from .resnet import RESNET50_TAPS, ResNet50Features
from .sr_net import SR_CONFIGS, SRNet, sr_net
from .loss_networks import (LOSS_NETWORKS, LossNetworkSpec, build_loss_network, get_loss_network_spec,
                            strip_prefixes)

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

__all__ = [
    "CONFIGS",
    "NormContext",
    "Preprocess",
    "TransformerNet",
    "VGG16_TAPS",
    "VGGFeatures",
    "WEIGHTS_DIR",
    "transformer_net",
    "VGG19_CFG",
    "VGG19_TAPS",
    "vgg19_features",
    "ALEXNET_TAPS",
    "AlexNetFeatures",
    "GOOGLENET_TAPS",
    "GoogLeNetFeatures",
    "RESNET50_TAPS",
    "ResNet50Features",
    "LOSS_NETWORKS",
    "LossNetworkSpec",
    "build_loss_network",
    "get_loss_network_spec",
    "strip_prefixes",
    "SR_CONFIGS",
    "SRNet",
    "sr_net",
]
