"""Tiled processing of large images with overlap blending, so memory is bounded by the tile size.

:func:`tiled_apply` cuts an image into overlapping tiles (positions aligned to ``align`` pixels), calls a
function on each and blends the results: each tile's weight ramps linearly up across the overlap on the sides
that border another tile and is 1 elsewhere, and the output is the weighted mean. Where only one tile covers a
pixel the output is that tile's output unchanged, so a local function gives the untiled result away from seams.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

Region = tuple[int, int, int, int]  # top, left, bottom, right (pixels)


def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with at least ``overlap`` shared pixels.

    Starts are multiples of ``align``; the last tile ends at ``length`` (``length`` must be a multiple of
    ``align`` when it exceeds ``tile``).
    """
    if tile >= length:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got {overlap} for tile {tile}")
    stride = max(align, (tile - overlap) // align * align)
    starts = list(range(0, length - tile, stride))
    starts.append((length - tile) // align * align)
    return sorted(set(starts))


def _ramp(size: int, before: int, after: int) -> torch.Tensor:
    """1-D weights: linear ramps over ``before``/``after`` pixels at the ends (strictly positive), 1 in between."""
    index = torch.arange(size, dtype=torch.float32)
    weights = torch.ones(size)
    if before > 0:
        weights = torch.minimum(weights, (index + 1) / (before + 1))
    if after > 0:
        weights = torch.minimum(weights, (size - index) / (after + 1))
    return weights


def tiled_apply(fn: Callable[[Region], torch.Tensor], height: int, width: int, tile: int, overlap: int,
                align: int = 1) -> torch.Tensor:
    """Blend ``fn(region)`` over overlapping tiles covering a ``height x width`` image.

    Args:
        fn: maps a region ``(top, left, bottom, right)`` to a ``(C, bottom - top, right - left)`` tensor.
        height, width: image size in pixels.
        tile: tile side in pixels (a tile larger than the image means one untiled call).
        overlap: pixels shared by neighbouring tiles (the blend ramps across them).
        align: tile starts are multiples of this (e.g. the VAE factor times the UNet factor).

    Returns:
        The blended ``(C, height, width)`` output.
    """
    rows, cols = tile_starts(height, tile, overlap, align), tile_starts(width, tile, overlap, align)
    output: torch.Tensor | None = None
    total = torch.zeros(1, height, width)
    for r, top in enumerate(rows):
        bottom = min(height, top + tile)
        for c, left in enumerate(cols):
            right = min(width, left + tile)
            result = fn((top, left, bottom, right))
            if output is None:
                output = torch.zeros(result.shape[0], height, width, dtype=result.dtype)
            ramp_top = rows[r - 1] + tile - top if r > 0 else 0
            ramp_bottom = bottom - rows[r + 1] if r + 1 < len(rows) else 0
            ramp_left = cols[c - 1] + tile - left if c > 0 else 0
            ramp_right = right - cols[c + 1] if c + 1 < len(cols) else 0
            weight = (_ramp(bottom - top, max(0, ramp_top), max(0, ramp_bottom))[:, None]
                      * _ramp(right - left, max(0, ramp_left), max(0, ramp_right))[None, :])
            output[:, top:bottom, left:right] += result * weight
            total[:, top:bottom, left:right] += weight
    assert output is not None
    return output / total


__all__ = ["Region", "tile_starts", "tiled_apply"]
