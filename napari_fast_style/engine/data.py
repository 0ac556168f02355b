"""Content images for training: a folder, or the embedded offline default, with random crops."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
SAMPLE_NAMES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
                "motorcycle_left", "colorwheel")


class DataError(ValueError):
    """No usable content images."""


def image_files(folder: Path) -> list[Path]:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"content folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"content folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def is_holdout(path: Path, fraction: float = 0.1) -> bool:
    """Deterministic train/validation split by file name (stable when files are added)."""
    h = int(hashlib.sha1(Path(path).name.encode()).hexdigest()[:8], 16)
    return (h % 1000) < fraction * 1000


def split_files(files: Sequence[Path], fraction: float = 0.1) -> tuple[list[Path], list[Path]]:
    train = [p for p in files if not is_holdout(p, fraction)]
    held = [p for p in files if is_holdout(p, fraction)]
    return train, held


def load_rgb(path: Path, short_side: Optional[int] = None) -> np.ndarray:
    """An image file as HxWx3 uint8, optionally resized so its shorter side is ``short_side``."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if short_side:
            w, h = im.size
            s = short_side / min(w, h)
            im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)
        return np.asarray(im, dtype=np.uint8).copy()


def sample_images() -> list[np.ndarray]:
    """scikit-image's bundled photographs (offline), as RGB uint8."""
    from skimage import data as skdata

    out = []
    for name in SAMPLE_NAMES:
        try:
            a = np.asarray(getattr(skdata, name)())
        except Exception:  # noqa: BLE001 - optional datasets may need pooch downloads
            continue
        out.append(to_rgb_uint8(a))
    return out


def to_rgb_uint8(a: np.ndarray) -> np.ndarray:
    """Any 2D grey / RGB / RGBA array of any dtype as RGB uint8 (min-max for non-uint8)."""
    a = np.asarray(a)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise DataError(f"expected a 2D grey or RGB(A) image, got shape {a.shape}")
    a = a[..., :3]
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    f = a.astype(np.float64)
    lo, hi = float(np.nanmin(f)), float(np.nanmax(f))
    if a.dtype == bool:
        lo, hi = 0.0, 1.0
    f = (f - lo) / (hi - lo) if hi > lo else np.zeros_like(f)
    return (np.clip(np.nan_to_num(f), 0, 1) * 255 + 0.5).astype(np.uint8)


class ContentSet:
    """In-memory content images, resized so the shorter side is ``short_side``, with random crops.

    Each sample: a random image, a random scale in ``scale_range`` (so strokes see several sizes),
    a square crop resized to ``size`` (antialiased) and a random horizontal flip.
    """

    def __init__(self, images: Iterable[np.ndarray], short_side: int = 512, min_side: int = 32):
        self.images: list[torch.Tensor] = []
        for a in images:
            a = to_rgb_uint8(a)
            h, w = a.shape[:2]
            if min(h, w) < min_side:
                continue
            s = short_side / min(h, w)
            if abs(s - 1) > 1e-3:
                a = np.asarray(Image.fromarray(a).resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC))
            self.images.append(torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1))
        if not self.images:
            raise DataError("no usable content images (each must be at least 32 pixels on a side)")

    @classmethod
    def from_folder(cls, folder: Path, short_side: int = 512, limit: Optional[int] = None,
                    exclude_holdout: float = 0.0) -> "ContentSet":
        files = image_files(folder)
        if exclude_holdout:
            files, _ = split_files(files, exclude_holdout)
        if limit:
            files = files[:limit]
        images = []
        for p in files:
            try:
                images.append(load_rgb(p, short_side))
            except Exception as e:  # noqa: BLE001 - a broken file is skipped, not fatal
                log.warning("skipping unreadable image %s: %s", p, e)
        return cls(images, short_side)

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, n: int, size: int, gen: torch.Generator, scale_range=(0.75, 1.25)) -> torch.Tensor:
        """``[n, 3, size, size]`` float32 RGB in [0, 1]."""
        out = torch.empty(n, 3, size, size)
        for i in range(n):
            img = self.images[int(torch.randint(len(self.images), (1,), generator=gen))]
            lo, hi = scale_range
            s = lo + (hi - lo) * float(torch.rand((), generator=gen))
            h, w = img.shape[1:]
            c = min(h, w, max(8, round(size / s)))
            y = int(torch.randint(h - c + 1, (1,), generator=gen))
            x = int(torch.randint(w - c + 1, (1,), generator=gen))
            crop = img[:, y:y + c, x:x + c].float()[None] / 255.0
            if c != size:
                crop = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            if float(torch.rand((), generator=gen)) < 0.5:
                crop = crop.flip(-1)
            out[i] = crop[0].clamp(0, 1)
        return out
