"""Progress reports, cancellation and the generator protocol every long operation follows.

A long operation is a generator that yields :class:`Progress` and *returns* its result; callers
drain it with :func:`run_sync` (CLI, scripts, tests) or hand it to a napari thread worker.
"""
from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Optional, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One step of a long operation. ``preview`` is an optional image (HxWx3 float32 in [0, 1])."""

    stage: str
    step: int
    total: int
    losses: dict = field(default_factory=dict)
    preview: Optional[np.ndarray] = None
    message: str = ""

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 0.0


class Cancelled(Exception):
    """Raised inside an operation when its :class:`CancelToken` is set (caught by the operation)."""


class CancelToken:
    """Thread-safe flag checked by operations at every step, tile or plane."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled


def run_sync(gen: Generator[Progress, Any, T], callback: Optional[Callable[[Progress], None]] = None) -> T:
    """Drain an operation generator and return its result (optionally calling ``callback`` per step)."""
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(p)


def atomic_write(path, write: Callable[[str], None], suffix: str = ".tmp") -> None:
    """Write ``path`` through ``write(tmp_path)`` into a temporary file beside it, then rename it into
    place: readers never see a half-written file, and a failure leaves nothing behind. The file gets
    the permissions a plain ``open()`` would give it (mkstemp's are owner-only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
