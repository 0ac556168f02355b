from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NAPARI_FAST_STYLE_SHARED", ROOT.parent / "shared"))
VGG_PATH = SHARED / "weights" / "vgg16_caffe_features.pth"


@pytest.fixture(autouse=True)
def user_models(tmp_path, monkeypatch):
    """Every test gets its own empty user model dir."""
    d = tmp_path / "user-models"
    monkeypatch.setenv("NAPARI_FAST_STYLE_MODELS", str(d))
    return d


@pytest.fixture(scope="session")
def vgg_path() -> Path:
    if not VGG_PATH.is_file():
        pytest.fail(f"the real VGG16 weights are missing: {VGG_PATH}")
    return VGG_PATH


@pytest.fixture(scope="session")
def vgg(vgg_path):
    from napari_fast_style.engine import load_vgg

    return load_vgg(vgg_path, ("relu1_2", "relu2_2", "relu3_3", "relu4_3"))


def random_style_net(arch: str = "fast", n_styles: int = 1, seed: int = 0):
    """A network with random weights and non-trivial norm affines (so statistics matter)."""
    from src_models import transformer_net

    torch.manual_seed(seed)
    net = transformer_net(arch, n_styles=n_styles)
    with torch.no_grad():
        for m in net.norms():
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.5, 0.5)
    return net.eval()


@pytest.fixture
def random_model(tmp_path):
    """Factory: save a random network as a model file and return its path."""
    from napari_fast_style.engine import save_model

    def make(arch="fast", n_styles=1, name=None, seed=0):
        net = random_style_net(arch, n_styles, seed)
        styles = tuple(f"s{i}" for i in range(n_styles))
        return save_model(net, tmp_path / f"{name or f'rand-{arch}-{n_styles}'}.safetensors", kind="style",
                          arch=arch, display_name="random", styles=styles, half=False)

    return make


@pytest.fixture
def rng():
    return np.random.default_rng(0)
