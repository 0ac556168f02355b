"""Shared pieces of the fixed feature extractors: tap validation, sequential taps, frozen BatchNorm."""
from __future__ import annotations

from typing import Iterable, Mapping, Optional

import torch
import torch.nn as nn


def select_taps(taps: Iterable[str], known: Mapping[str, int], net: str) -> list[str]:
    """Validate requested tap names and return them in forward order."""
    taps = list(taps)
    unknown = [t for t in taps if t not in known]
    if unknown or not taps:
        raise ValueError(f"unknown {net} taps {unknown}; known: {list(known)}")
    return sorted(set(taps), key=known.__getitem__)


class SequentialTaps(nn.Module):
    """Runs ``self.features`` (an ``nn.Sequential``) and returns the outputs at indices ``self._at``."""

    features: nn.Sequential
    _at: dict

    def forward(self, rgb01: torch.Tensor, upto: Optional[str] = None) -> dict[str, torch.Tensor]:
        """The tapped activations; ``upto``: stop after that tap (the deeper layers are not run)."""
        x = self.preprocess(rgb01)
        last = len(self.features) - 1
        if upto is not None:
            at = {v: k for k, v in self._at.items()}
            if upto not in at:
                raise ValueError(f"upto={upto!r} is not one of this network's taps {list(at)}")
            last = at[upto]
        out = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._at:
                out[self._at[i]] = x
            if i == last:
                break
        return out


class FrozenBatchNorm(nn.Module):
    """Mixin: ``train()`` sets the module flags as usual but keeps BatchNorm on its running statistics."""

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.training = False
        return self
