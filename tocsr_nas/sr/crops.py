"""Side-by-side comparison crops: the same window of the LR input, every method's output and the ground truth.

A strip is one row of ``size x size`` panels with a label band on top: the LR image upscaled by nearest
neighbour (what the model saw), then each method's output in the given order, then the HR image. The window
is the one with the most detail (largest mean gradient of Y on a grid of windows), so flat sky is not what a
reader compares.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from ..data.images import write_image
from .metrics import rgb_to_y

LABEL_HEIGHT = 14  # pixels of the label band above the panels
GAP = 4  # pixels between panels


def detail_window(hr: torch.Tensor, size: int, scale: int) -> tuple[int, int]:
    """``(top, left)`` of the ``size``-px window (starts on a grid of ``scale``-aligned steps) with most detail."""
    height, width = hr.shape[-2:]
    size = min(size, height, width)
    y = rgb_to_y(hr.clamp(0, 1))
    gradient = (y[..., 1:, :-1] - y[..., :-1, :-1]).abs() + (y[..., :-1, 1:] - y[..., :-1, :-1]).abs()
    step = max(scale, size // 4 // scale * scale)
    best, where = -1.0, (0, 0)
    for top in range(0, height - size + 1, step):
        for left in range(0, width - size + 1, step):
            score = float(gradient[..., top:top + size - 1, left:left + size - 1].mean())
            if score > best:
                best, where = score, (top, left)
    return where


def compare_strip(lr: torch.Tensor, hr: torch.Tensor, outputs: Mapping[str, torch.Tensor], scale: int,
                  size: int = 128) -> Image.Image:
    """An RGB strip of labelled panels: ``LR (nearest)``, each of ``outputs`` (HR-sized), ``HR``."""
    size = min(size, *hr.shape[-2:])
    top, left = detail_window(hr, size, scale)
    nearest = F.interpolate(lr[None], scale_factor=scale, mode="nearest")[0]
    panels = {"LR (nearest)": nearest, **outputs, "HR": hr}
    width = len(panels) * size + (len(panels) - 1) * GAP
    strip = Image.new("RGB", (width, size + LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(strip)
    for index, (name, image) in enumerate(panels.items()):
        crop = image[:, top:top + size, left:left + size].clamp(0, 1)
        array = (crop.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        x = index * (size + GAP)
        strip.paste(Image.fromarray(array), (x, LABEL_HEIGHT))
        draw.text((x + 1, 1), name[: size // 6], fill="black")
    return strip


def write_compare_strip(path: str | Path, lr: torch.Tensor, hr: torch.Tensor, outputs: Mapping[str, torch.Tensor],
                        scale: int, size: int = 128) -> Path:
    """Write :func:`compare_strip` as a PNG (atomically) and return its path."""
    return write_image(compare_strip(lr, hr, outputs, scale, size), path)


__all__ = ["GAP", "LABEL_HEIGHT", "compare_strip", "detail_window", "write_compare_strip"]
