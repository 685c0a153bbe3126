"""Single degradation operations on one image ``(C, H, W)`` in [0, 1]; randomness only via a generator."""
from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

_GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma


def quantize(image: Tensor) -> Tensor:
    """Clamp to [0, 1] and round to the 256 levels of an 8-bit image."""
    return torch.clamp((image * 255.0).round(), 0.0, 255.0) / 255.0


def resize(image: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """Resize with ``torch.nn.functional.interpolate`` (``area``, ``bilinear`` or ``bicubic``; no antialias)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    align = None if mode == "area" else False
    return F.interpolate(image[None], size=size, mode=mode, align_corners=align)[0]


def _gray(image: Tensor) -> Tensor:
    """Luma ``(1, H, W)`` of an RGB image; a one-channel image is returned as is."""
    if image.shape[0] == 1:
        return image
    weights = torch.tensor(_GRAY_WEIGHTS, dtype=image.dtype).view(3, 1, 1)
    return (image * weights).sum(dim=0, keepdim=True)


def add_gaussian_noise(image: Tensor, sigma: float, gray: bool, generator: torch.Generator) -> Tensor:
    """Add zero-mean Gaussian noise of std ``sigma / 255``; ``gray`` shares one noise map across channels."""
    channels = 1 if gray else image.shape[0]
    noise = torch.randn((channels, *image.shape[1:]), generator=generator, dtype=image.dtype)
    return (image + noise * (sigma / 255.0)).clamp(0.0, 1.0)


def add_poisson_noise(image: Tensor, scale: float, gray: bool, generator: torch.Generator) -> Tensor:
    """Add scaled Poisson (shot) noise, clamped to [0, 1].

    As in scikit-image's ``random_noise(mode='poisson')``, the photon count per unit intensity is the number of
    distinct 8-bit levels in the image rounded up to a power of two (256 for most natural images); the noise
    ``poisson(v * levels) / levels - v`` is then multiplied by ``scale``. ``gray`` computes it on the luma
    channel and adds the same map to every channel.
    """
    levels8 = torch.clamp((image * 255.0).round(), 0.0, 255.0)
    distinct = int(torch.bincount(levels8.flatten().to(torch.int64), minlength=256).count_nonzero())
    levels = 2.0 ** math.ceil(math.log2(max(1, distinct)))
    base = levels8 / 255.0
    if gray:
        base = _gray(base)
    noise = torch.poisson(base * levels, generator=generator) / levels - base
    return (image + noise * scale).clamp(0.0, 1.0)


def jpeg(image: Tensor, quality: int) -> Tensor:
    """Encode and decode as JPEG with Pillow (in memory, default 4:2:0 chroma subsampling).

    The image (1 or 3 channels) is rounded to 8 bits first; the result has the input's dtype.
    """
    channels = image.shape[0]
    if channels not in (1, 3):
        raise ValueError(f"JPEG needs 1 or 3 channels, got {channels}")
    array = torch.clamp((image * 255.0).round(), 0, 255).to(torch.uint8)
    array = array[0].numpy() if channels == 1 else array.permute(1, 2, 0).contiguous().numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        out = np.asarray(decoded.convert("L" if channels == 1 else "RGB"))
    out_t = torch.from_numpy(out.copy()).to(image.dtype) / 255.0
    return out_t[None] if channels == 1 else out_t.permute(2, 0, 1).contiguous()
