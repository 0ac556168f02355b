"""The one image converter: napari image-layer data <-> float32 RGB in [0, 1].

It owns dtype, value range, channel and axis handling; nothing else in the package clamps or rescales
image intensities.

* Layouts: 2D grey ``(..., H, W)``, RGB/RGBA ``(..., H, W, 3|4)``; leading axes are a stack of planes.
* Dtypes: bool, unsigned and signed integers, floats (NaN becomes the lower limit). Intensities
  are mapped through ``limits`` (napari's contrast limits, so what the user sees is what is processed).
* Grey planes are processed as RGB (the grey value in all three channels) and come back as RGB.
* Alpha is carried through: for uint8 and for float data in [0, 1] the alpha values are returned
  unchanged; otherwise they are mapped through the same limits as the colour channels.
* Output dtype: uint8 in -> uint8 out; anything else -> float32 in [0, 1] (an RGB float layer in
  napari), unless ``out_dtype`` asks for the input dtype, which maps [0, 1] back onto ``limits``.
* Reading never modifies the caller's array; dask and other array-likes are read plane by plane.
* Super-resolution keeps grey planes grey (:func:`from_unit_keep_channels`) and maps each plane through
  its data range (:func:`data_limits`), so measurements keep their intensity scale.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch


class ImageError(ValueError):
    """The data is not an image this package can process (clear message for the user)."""


@dataclass(frozen=True)
class ImageLayout:
    shape: tuple
    rgb: bool
    dtype: np.dtype
    limits: tuple  # (lo, hi) mapped to (0, 1)

    @property
    def channels(self) -> int:
        return self.shape[-1] if self.rgb else 1

    @property
    def has_alpha(self) -> bool:
        return self.rgb and self.shape[-1] == 4

    @property
    def leading(self) -> tuple:
        return tuple(self.shape[:-3] if self.rgb else self.shape[:-2])

    @property
    def spatial(self) -> tuple:
        return tuple(self.shape[-3:-1] if self.rgb else self.shape[-2:])

    @property
    def n_planes(self) -> int:
        return int(np.prod(self.leading)) if self.leading else 1

    def plane_indices(self, plane: Optional[tuple] = None) -> list[tuple]:
        """Every plane's index over the leading axes, or just ``plane`` (validated)."""
        if plane is None:
            return list(np.ndindex(*self.leading)) if self.leading else [()]
        plane = tuple(int(i) for i in plane)
        if len(plane) != len(self.leading) or any(not 0 <= i < n for i, n in zip(plane, self.leading)):
            raise ImageError(f"plane {plane} is not an index into the leading axes {self.leading}")
        return [plane]

    def out_dtype(self, request: Optional[str] = None) -> np.dtype:
        if request in (None, "auto"):
            return np.dtype(np.uint8) if self.dtype == np.uint8 else np.dtype(np.float32)
        if request == "input":
            return np.dtype(bool) if self.dtype == bool else self.dtype
        return np.dtype(request)

    def out_channels(self) -> int:
        return 4 if self.has_alpha else 3


def guess_rgb(shape: Sequence[int]) -> bool:
    """napari's rule: more than 2 dims and a last axis of 3 or 4."""
    return len(shape) > 2 and shape[-1] in (3, 4)


def _data_range(data) -> tuple[float, float]:
    a = np.asarray(data)
    if a.size == 0:
        return 0.0, 1.0
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise ImageError("the image holds only NaN/inf values")
    return lo, hi


def default_limits(data, dtype: np.dtype) -> tuple[float, float]:
    """uint8 and bool: their full range; floats inside [0, 1]: (0, 1); anything else: the data range."""
    if dtype == bool:
        return 0.0, 1.0
    if dtype == np.uint8:
        return 0.0, 255.0
    lo, hi = _data_range(data)
    if dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    return lo, hi


def data_limits(plane, layout: ImageLayout) -> tuple[float, float]:
    """The data range of one plane's colour channels (uint8 and bool: their full range): limits that
    keep the intensity scale of measurements (:func:`from_unit` maps back onto the same range)."""
    if layout.dtype == bool:
        return 0.0, 1.0
    if layout.dtype == np.uint8:
        return 0.0, 255.0
    lo, hi = _data_range(plane[..., :3] if layout.rgb else plane)
    return lo, (hi if hi > lo else lo + 1.0)


def describe(data, rgb: Optional[bool] = None, limits: Optional[Sequence[float]] = None) -> ImageLayout:
    """Validate image data and describe how it will be read. Raises :class:`ImageError`."""
    shape = tuple(int(s) for s in getattr(data, "shape", ()))
    dtype = np.dtype(getattr(data, "dtype", np.float64))
    if dtype.kind not in "biuf":
        raise ImageError(f"unsupported image dtype {dtype} (use bool, integer or float data)")
    if rgb is None:
        rgb = guess_rgb(shape)
    if rgb and (len(shape) < 3 or shape[-1] not in (3, 4)):
        raise ImageError(f"an RGB image needs a last axis of 3 or 4 channels, got shape {shape}")
    if len(shape) < 2 or (rgb and len(shape) < 3):
        raise ImageError(f"need at least a 2D image, got shape {shape}")
    spatial = shape[-3:-1] if rgb else shape[-2:]
    if min(spatial) < 1 or 0 in shape:
        raise ImageError(f"the image is empty (shape {shape})")
    if limits is None:
        limits = default_limits(data, dtype)
    lo, hi = float(limits[0]), float(limits[1])
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ImageError(f"contrast limits must be finite, got {limits}")
    if hi <= lo:
        hi = lo + 1.0  # a constant image: anything maps to 0
    return ImageLayout(shape=shape, rgb=bool(rgb), dtype=dtype, limits=(lo, hi))


def read_plane(data, layout: ImageLayout, index: tuple) -> np.ndarray:
    """One plane (H, W) or (H, W, C) as a numpy array (a view for numpy input; never written to)."""
    return np.asarray(data[index] if index else data)


def _reflect(idx: np.ndarray, n: int) -> np.ndarray:
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    idx = np.abs(idx) % period
    return np.where(idx < n, idx, period - idx)


class PlaneReader:
    """Reads rectangles of one plane as float32 RGB tensors in [0, 1], reflecting past the edges.

    Regions may extend beyond the plane (to the padded size a network needs); those pixels mirror the
    plane's last rows/columns, identically for tiled and whole-plane reads.
    """

    def __init__(self, plane: np.ndarray, layout: ImageLayout):
        self.plane = plane
        self.layout = layout
        self.h, self.w = layout.spatial

    def raw(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        rows = _reflect(np.arange(y0, y1), self.h)
        cols = _reflect(np.arange(x0, x1), self.w)
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        sub = np.asarray(self.plane[r0:r1, c0:c1])
        if y0 == r0 and y1 == r1 and x0 == c0 and x1 == c1:
            return sub
        return sub[np.ix_(rows - r0, cols - c0)]

    def unit(self, raw: np.ndarray) -> np.ndarray:
        """Raw plane values -> float32 (h, w, 3) in [0, 1] (grey replicated; alpha dropped)."""
        lo, hi = self.layout.limits
        a = raw[..., :3] if self.layout.rgb else raw[..., None]
        f = a.astype(np.float32)
        if self.layout.dtype.kind == "f":
            f = np.nan_to_num(f, nan=lo, posinf=hi, neginf=lo)
        if (lo, hi) != (0.0, 1.0):
            f = (f - np.float32(lo)) * np.float32(1.0 / (hi - lo))
        np.clip(f, 0.0, 1.0, out=f)
        if not self.layout.rgb:
            f = np.repeat(f, 3, axis=-1)
        return f

    def read(self, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
        """``[1, 3, y1 - y0, x1 - x0]`` float32 in [0, 1]."""
        return torch.from_numpy(np.ascontiguousarray(self.unit(self.raw(y0, y1, x0, x1)).transpose(2, 0, 1)))[None]

    def alpha(self, y0: int, y1: int, x0: int, x1: int) -> Optional[np.ndarray]:
        return self.raw(y0, y1, x0, x1)[..., 3] if self.layout.has_alpha else None


def from_unit(rgb01: np.ndarray, layout: ImageLayout, out_dtype: np.dtype,
              alpha_raw: Optional[np.ndarray] = None) -> np.ndarray:
    """float (h, w, 3) in [0, 1] (clamped here) -> (h, w, 3|4) of ``out_dtype``; alpha carried through."""
    f = np.clip(np.asarray(rgb01, dtype=np.float32), 0.0, 1.0)
    out = np.empty(f.shape[:2] + (3 if alpha_raw is None else 4,), dtype=out_dtype)
    out[..., :3] = _encode(f, layout, out_dtype)
    if alpha_raw is not None:
        if np.dtype(alpha_raw.dtype) == out_dtype or (layout.limits == (0.0, 1.0) and out_dtype.kind == "f"):
            out[..., 3] = alpha_raw
        else:
            lo, hi = layout.limits
            a = np.clip((alpha_raw.astype(np.float32) - lo) / (hi - lo), 0, 1)
            out[..., 3] = _encode(a, layout, out_dtype)
    return out


def from_unit_keep_channels(rgb01: np.ndarray, layout: ImageLayout, out_dtype: np.dtype,
                            alpha_raw: Optional[np.ndarray] = None) -> np.ndarray:
    """Like :func:`from_unit`, but a grey layout stays grey: ``(h, w)``, the mean of the three channels
    (operations that must not turn grey data into RGB, e.g. super-resolution)."""
    if layout.rgb:
        return from_unit(rgb01, layout, out_dtype, alpha_raw)
    f = np.clip(np.asarray(rgb01, dtype=np.float32).mean(axis=-1), 0.0, 1.0)
    return _encode(f, layout, out_dtype)


def _encode(f: np.ndarray, layout: ImageLayout, out_dtype: np.dtype) -> np.ndarray:
    if out_dtype == np.uint8:
        return np.rint(f * 255.0).astype(np.uint8)
    if out_dtype.kind == "f":
        if out_dtype == layout.dtype and layout.limits != (0.0, 1.0):
            lo, hi = layout.limits
            return (f * (hi - lo) + lo).astype(out_dtype)
        return f.astype(out_dtype, copy=False)
    if out_dtype == bool:
        return f >= 0.5
    lo, hi = layout.limits
    info = np.iinfo(out_dtype)
    return np.clip(np.rint(f.astype(np.float64) * (hi - lo) + lo), info.min, info.max).astype(out_dtype)
