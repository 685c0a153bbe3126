"""MATLAB-compatible bicubic ``imresize`` on torch tensors, and the classic bicubic SR degradation.

The algorithm follows MATLAB's documented ``imresize`` (method ``'bicubic'``):

* cubic convolution kernel with ``a = -0.5`` (Keys), support ``[-2, 2]``;
* when shrinking (``scale < 1``) with antialiasing, the kernel is stretched to ``scale * cubic(scale * x)``
  so its support widens to ``4 / scale`` input pixels;
* output pixel ``x`` (1-based) maps to input coordinate ``u = x / scale + 0.5 * (1 - 1 / scale)``;
  the taps are ``floor(u - width / 2) + [0, ceil(width) + 2)``, their weights normalised to sum to 1;
* out-of-range taps are mirrored symmetrically (``[1..n, n..1]`` repeated), i.e. half-sample reflection;
* output length is ``ceil(in * scale)`` when a scale is given.

Each axis becomes a dense ``(out, in)`` weight matrix (cached), so a resize is two matrix products.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

_SIZE_TOLERANCE = 1e-9  # ceil(9 * (1/3)) must be 3, not 4, despite floating-point error


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with ``a = -0.5`` (MATLAB's ``'bicubic'``)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


@functools.lru_cache(maxsize=128)
def resize_matrix(in_len: int, out_len: int, scale: float, antialias: bool = True) -> np.ndarray:
    """The ``(out_len, in_len)`` float64 matrix that resizes one axis like MATLAB's ``imresize``."""
    shrink_aa = antialias and scale < 1
    width = 4.0 / scale if shrink_aa else 4.0
    out_pos = np.arange(1, out_len + 1, dtype=np.float64)
    centre = out_pos / scale + 0.5 * (1.0 - 1.0 / scale)
    taps = int(math.ceil(width)) + 2
    index = np.floor(centre - width / 2.0)[:, None] + np.arange(taps)[None, :]  # 1-based input positions
    dist = centre[:, None] - index
    weights = scale * cubic(scale * dist) if shrink_aa else cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)
    period = 2 * in_len
    folded = np.mod(index - 1, period).astype(np.int64)  # 0-based position in [0..n-1, n-1..0]
    source = np.where(folded < in_len, folded, period - 1 - folded)
    matrix = np.zeros((out_len, in_len), dtype=np.float64)
    np.add.at(matrix, (np.repeat(np.arange(out_len), taps), source.ravel()), weights.ravel())
    return matrix


def _output_plan(in_hw: tuple[int, int], scale: float | tuple[float, float] | None,
                 size: tuple[int, int] | None) -> tuple[tuple[int, int], tuple[float, float]]:
    """Output size and per-axis scale from either ``scale`` or ``size`` (exactly one)."""
    if (scale is None) == (size is None):
        raise ValueError("imresize: give exactly one of scale= or size=")
    if size is not None:
        out_hw = (int(size[0]), int(size[1]))
        if min(out_hw) < 1:
            raise ValueError(f"imresize: size must be positive, got {size}")
        return out_hw, (out_hw[0] / in_hw[0], out_hw[1] / in_hw[1])
    scales = (float(scale), float(scale)) if isinstance(scale, (int, float)) else (float(scale[0]), float(scale[1]))
    if min(scales) <= 0:
        raise ValueError(f"imresize: scale must be positive, got {scale}")
    out_hw = tuple(max(1, math.ceil(n * s - _SIZE_TOLERANCE)) for n, s in zip(in_hw, scales, strict=True))
    return (out_hw[0], out_hw[1]), scales


def imresize(image: Tensor, scale: float | tuple[float, float] | None = None, *,
             size: tuple[int, int] | None = None, antialias: bool = True) -> Tensor:
    """Resize a float image like MATLAB's ``imresize(image, scale, 'bicubic')``.

    Args:
        image: float tensor ``(..., H, W)``, e.g. ``(C, H, W)`` or ``(B, C, H, W)``.
        scale: one factor or ``(scale_h, scale_w)``; output size is ``ceil(in * scale)``.
        size: output ``(H, W)`` instead of ``scale``; the per-axis scale is then ``out / in``.
        antialias: widen the kernel by ``1 / scale`` when shrinking (MATLAB's default).

    Returns:
        The resized tensor, same dtype and leading dims; values are not clamped (bicubic overshoots).
    """
    if not torch.is_floating_point(image) or image.dim() < 2:
        raise ValueError(f"imresize: expected a float tensor (..., H, W), got {image.dtype} {tuple(image.shape)}")
    in_hw = (image.shape[-2], image.shape[-1])
    out_hw, scales = _output_plan(in_hw, scale, size)
    rows = torch.from_numpy(resize_matrix(in_hw[0], out_hw[0], scales[0], antialias)).to(image.dtype)
    cols = torch.from_numpy(resize_matrix(in_hw[1], out_hw[1], scales[1], antialias)).to(image.dtype)
    return torch.matmul(torch.matmul(rows, image.contiguous()), cols.T)


class BicubicDegradation:
    """Classic SR degradation: MATLAB bicubic downscaling by ``1 / scale``.

    The HR image is first cropped (bottom/right) to a multiple of ``scale`` so the LR is exactly
    ``(C, H // scale, W // scale)``. The output is clamped to [0, 1] and, by default, rounded to 8-bit levels
    as when saving the LR image as PNG. The generator argument exists only for a common call signature.
    """

    def __init__(self, scale: int = 4, *, antialias: bool = True, quantize: bool = True) -> None:
        if int(scale) != scale or scale < 1:
            raise ValueError(f"BicubicDegradation: scale must be a positive integer, got {scale}")
        self.scale, self.antialias, self.quantize = int(scale), antialias, quantize
        self.last_params: dict[str, object] = {}

    def __call__(self, hr: Tensor, generator: torch.Generator | int | None = None) -> Tensor:
        """Degrade ``hr`` ``(C, H, W)`` (or batched) in [0, 1] to its LR counterpart."""
        height, width = hr.shape[-2] - hr.shape[-2] % self.scale, hr.shape[-1] - hr.shape[-1] % self.scale
        if height == 0 or width == 0:
            raise ValueError(f"BicubicDegradation: image {tuple(hr.shape)} is smaller than scale {self.scale}")
        lr = imresize(hr[..., :height, :width], 1.0 / self.scale, antialias=self.antialias).clamp(0.0, 1.0)
        if self.quantize:
            lr = (lr * 255.0).round() / 255.0
        self.last_params = {"crop": (height, width), "scale": self.scale}
        return lr
