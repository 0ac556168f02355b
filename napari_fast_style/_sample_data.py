"""Sample data: scikit-image's bundled public-domain photographs (no torch, no download)."""
from __future__ import annotations


def _sample(name: str, title: str):
    from skimage import data

    return [(getattr(data, name)(), {"name": title, "rgb": True})]


def astronaut():
    return _sample("astronaut", "astronaut")


def coffee():
    return _sample("coffee", "coffee")
