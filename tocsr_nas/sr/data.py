"""HR/LR training pairs: seeded HR crops, degraded by a seeded degradation, the LR upsampled back to HR size.

An item is one ``(6, S, S)`` tensor, ``HR crop ++ bicubic-upsampled LR``, so the shared training loop can stack
items into a batch like any other crop; :func:`split_pair` takes a batch apart again. Item ``i`` is a pure
function of ``(seed, i)`` (crop, flips and the degradation's random draws), so resumed runs see the same pairs.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..data.images import ImageCropDataset
from ..degradations import Degradation
from ..errors import ConfigError
from .pipeline import upsample_lr


class SRPairDataset(torch.utils.data.Dataset):
    """Seeded ``HR ++ upsampled LR`` pairs of side ``crop_size`` from images held in memory.

    Args:
        files: HR image files.
        crop_size: HR crop side; must be a multiple of the degradation's scale.
        length: number of items.
        degradation: ``(hr, generator) -> lr`` with an integer ``scale``.
        seed: base seed of crops, flips and degradations.
        flips: random horizontal/vertical flips.
    """

    def __init__(self, files: Sequence[str | Path], crop_size: int, length: int, degradation: Degradation,
                 seed: int = 0, flips: bool = True) -> None:
        if crop_size % degradation.scale:
            raise ConfigError(f"crop_size {crop_size} is not a multiple of the scale {degradation.scale}",
                              key="data.crop_size")
        self.crops = ImageCropDataset(files, crop_size, length, seed=seed, flips=flips)
        self.degradation, self.seed = degradation, seed

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int) -> torch.Tensor:
        hr = self.crops[index]
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index + 7)
        lr = self.degradation(hr, generator)
        return torch.cat([hr, upsample_lr(lr, self.degradation.scale)], dim=0)


def split_pair(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, 6, S, S)`` -> ``(hr, upsampled_lr)``, each ``(B, 3, S, S)``."""
    return batch[:, :3], batch[:, 3:]


__all__ = ["SRPairDataset", "split_pair"]
