"""napari-fast-style: neural style transfer and perceptual super-resolution for napari.

Importing the package is cheap (no torch, no napari): the engine lives in
:mod:`napari_fast_style.engine`, the dock widgets in :mod:`napari_fast_style._widgets`.
"""
try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("napari-fast-style")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.1.0"

__all__ = ["__version__"]
