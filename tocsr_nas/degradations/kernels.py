"""Blur kernels of the Real-ESRGAN degradation model, and 2-D filtering with them.

All kernels are odd-sized, centred, sum to 1 and are point-symmetric (``k(x) == k(-x)``), so correlation and
convolution coincide. With ``Q(x) = xᵀ Σ⁻¹ x`` for the rotated covariance ``Σ = R diag(σx², σy²) Rᵀ``:

* Gaussian: ``exp(-Q / 2)``;
* generalised Gaussian: ``exp(-Q^β / 2)`` (heavier or lighter tails than Gaussian);
* plateau: ``1 / (1 + Q^β)`` (flat top);
* sinc (circular low-pass with cut-off ``ω``): ``ω J1(ω r) / (2π r)``, ``ω² / (4π)`` at ``r = 0``; models ringing.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Shape = Literal["gaussian", "generalized", "plateau"]


def _grid(size: int) -> tuple[Tensor, Tensor]:
    """Row and column offsets from the centre of an odd ``size x size`` kernel (float64)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd integer, got {size}")
    axis = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    return torch.meshgrid(axis, axis, indexing="ij")


def _normalise(kernel: Tensor) -> Tensor:
    return kernel / kernel.sum()


def anisotropic_kernel(size: int, sigma_x: float, sigma_y: float, rotation: float,
                       shape: Shape = "gaussian", beta: float = 1.0) -> Tensor:
    """A (possibly rotated, anisotropic) Gaussian-family kernel, float64 ``(size, size)`` summing to 1.

    Args:
        size: odd kernel side.
        sigma_x: standard deviation along the kernel's own x axis, before rotation.
        sigma_y: standard deviation along the kernel's own y axis, before rotation.
        rotation: angle in radians of the ``sigma_x`` axis.
        shape: ``gaussian``, ``generalized`` or ``plateau``.
        beta: shape exponent for ``generalized`` and ``plateau`` (ignored for ``gaussian``).
    """
    rows, cols = _grid(size)
    cos, sin = math.cos(rotation), math.sin(rotation)
    # Coordinates in the kernel's rotated frame; Q = (u / σx)² + (v / σy)² equals xᵀ Σ⁻¹ x.
    along = cols * cos + rows * sin
    across = -cols * sin + rows * cos
    quad = (along / sigma_x) ** 2 + (across / sigma_y) ** 2
    if shape == "gaussian":
        kernel = torch.exp(-0.5 * quad)
    elif shape == "generalized":
        kernel = torch.exp(-0.5 * quad.pow(beta))
    elif shape == "plateau":
        kernel = 1.0 / (quad.pow(beta) + 1.0)
    else:
        raise ValueError(f"unknown kernel shape {shape!r} (allowed: gaussian, generalized, plateau)")
    return _normalise(kernel)


def sinc_kernel(size: int, cutoff: float) -> Tensor:
    """Circular low-pass (2-D sinc) kernel with cut-off frequency ``cutoff`` in radians, summing to 1."""
    rows, cols = _grid(size)
    radius = torch.sqrt(rows**2 + cols**2)
    safe = torch.where(radius == 0, torch.ones_like(radius), radius)
    kernel = cutoff * torch.special.bessel_j1(cutoff * safe) / (2 * math.pi * safe)
    kernel = torch.where(radius == 0, torch.full_like(radius, cutoff**2 / (4 * math.pi)), kernel)
    return _normalise(kernel)


def filter2d(image: Tensor, kernel: Tensor) -> Tensor:
    """Filter every channel of ``image`` ``(C, H, W)`` with ``kernel`` ``(k, k)``, same size out.

    Borders are reflected (replicated when the image is too small to reflect ``k // 2`` pixels).
    """
    size = kernel.shape[-1]
    pad = size // 2
    channels = image.shape[0]
    mode = "reflect" if pad < min(image.shape[-2:]) else "replicate"
    padded = F.pad(image[None], (pad, pad, pad, pad), mode=mode)
    weight = kernel.to(image.dtype).expand(channels, 1, size, size)
    return F.conv2d(padded, weight, groups=channels)[0]
