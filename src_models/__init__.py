"""Pure ``torch.nn`` network definitions, training recipes and bundled weights.

Nothing in this package imports napari, Qt or magicgui, and nothing here reads files or downloads
weights at construction time: loading lives in :mod:`napari_fast_style.engine`.
"""
from pathlib import Path

from .transformer_net import CONFIGS, NormContext, TransformerNet, transformer_net
from .vgg import VGG16_TAPS, Preprocess, VGGFeatures

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
]
