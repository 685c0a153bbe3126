"""Colour correction of an SR output towards a reference (the bicubic-upsampled LR image).

* ``adain``: per-channel mean and standard deviation of the output are matched to the reference's;
* ``wavelet``: the output's low-frequency part (what remains after ``levels`` dilated blurs, an a-trous
  wavelet decomposition) is replaced by the reference's, keeping the output's high-frequency detail.

Images are ``(C, H, W)`` or ``(B, C, H, W)`` float tensors of the same shape.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError

COLOR_FIXES = ("none", "adain", "wavelet")


def adain_fix(image: torch.Tensor, reference: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Match each channel's mean and std of ``image`` to ``reference``'s."""
    dims = (-2, -1)
    mean, std = image.mean(dims, keepdim=True), image.std(dims, keepdim=True)
    ref_mean, ref_std = reference.mean(dims, keepdim=True), reference.std(dims, keepdim=True)
    return (image - mean) / (std + eps) * ref_std + ref_mean


def _blur(image: torch.Tensor, dilation: int) -> torch.Tensor:
    """3x3 binomial blur with the given dilation, replicate padding (input ``(B, C, H, W)``)."""
    kernel_1d = torch.tensor([0.25, 0.5, 0.25], dtype=image.dtype)
    kernel = (kernel_1d[:, None] * kernel_1d[None, :]).expand(image.shape[1], 1, 3, 3)
    padded = F.pad(image, (dilation,) * 4, mode="replicate")
    return F.conv2d(padded, kernel, dilation=dilation, groups=image.shape[1])


def low_frequency(image: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """What remains of ``image`` after ``levels`` a-trous blurs (dilations 1, 2, 4, ...)."""
    batched = image if image.dim() == 4 else image[None]
    for level in range(levels):
        dilation = 2 ** level
        if dilation >= min(batched.shape[-2:]):  # replicate padding needs the image wider than the dilation
            break
        batched = _blur(batched, dilation)
    return batched if image.dim() == 4 else batched[0]


def wavelet_fix(image: torch.Tensor, reference: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """``image``'s high frequencies on ``reference``'s low frequencies."""
    return image - low_frequency(image, levels) + low_frequency(reference, levels)


def color_fix(image: torch.Tensor, reference: torch.Tensor, method: str) -> torch.Tensor:
    """Apply a colour fix by name (``none``, ``adain``, ``wavelet``); the result is clamped to ``[0, 1]``."""
    if method == "none":
        return image
    if method == "adain":
        return adain_fix(image, reference).clamp(0, 1)
    if method == "wavelet":
        return wavelet_fix(image, reference).clamp(0, 1)
    raise ConfigError(f"unknown colour fix {method!r}", key="color_fix", allowed=list(COLOR_FIXES))


__all__ = ["COLOR_FIXES", "adain_fix", "color_fix", "low_frequency", "wavelet_fix"]
