"""SR metrics by the standard protocol: PSNR and SSIM on the Y channel of 8-bit images, ``shave`` pixels cut.

* Images in ``[0, 1]`` are first quantised to 8-bit levels (as when saved as PNG).
* Y is ITU-R BT.601 luma as MATLAB's ``rgb2ycbcr``: ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` (R, G, B in
  ``[0, 1]``, Y in ``[16, 235]``), kept in float (not rounded), as the usual SR evaluation scripts do.
* ``shave`` pixels (the scale) are removed from every border before measuring.
* LPIPS (AlexNet variant, Zhang et al. 2018) only from local weight files (:func:`load_lpips`): the
  torchvision-layout AlexNet ``features.*`` weights and the LPIPS ``lin{0..4}.model.1.weight`` layers
  (``.safetensors``, or ``.pth`` read with ``weights_only=True``). Nothing is downloaded.
* SSIM (Wang et al. 2004) with an 11x11 Gaussian window, sigma 1.5, ``K1 = 0.01``, ``K2 = 0.03``,
  ``L = 255``, averaged over the valid (unpadded) window positions.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ..errors import ConfigError

_Y_WEIGHTS = (65.481, 128.553, 24.966)


def quantize(image: torch.Tensor) -> torch.Tensor:
    """Round ``[0, 1]`` values to 8-bit levels (still in ``[0, 1]``)."""
    return (image.clamp(0, 1) * 255).round() / 255


def rgb_to_y(image: torch.Tensor) -> torch.Tensor:
    """BT.601 luma in ``[16, 235]`` (float64) of an RGB ``(3, H, W)`` image in ``[0, 1]``."""
    weights = torch.tensor(_Y_WEIGHTS, dtype=torch.float64)[:, None, None]
    return 16.0 + (image.double() * weights).sum(0)


def crop_to_scale(image: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop the bottom/right of ``(..., H, W)`` so both sides are multiples of ``scale``."""
    height, width = image.shape[-2] - image.shape[-2] % scale, image.shape[-1] - image.shape[-1] % scale
    return image[..., :height, :width]


def _shave(plane: torch.Tensor, shave: int) -> torch.Tensor:
    return plane[shave:plane.shape[0] - shave, shave:plane.shape[1] - shave] if shave else plane


def _y_planes(estimate: torch.Tensor, reference: torch.Tensor, shave: int) -> tuple[torch.Tensor, torch.Tensor]:
    if estimate.shape != reference.shape:
        raise ValueError(f"shapes differ: {tuple(estimate.shape)} vs {tuple(reference.shape)}")
    return _shave(rgb_to_y(quantize(estimate)), shave), _shave(rgb_to_y(quantize(reference)), shave)


def psnr_y(estimate: torch.Tensor, reference: torch.Tensor, shave: int = 0) -> float:
    """PSNR (dB, peak 255) between the Y channels of two RGB images in ``[0, 1]``."""
    est, ref = _y_planes(estimate, reference, shave)
    mse = float((est - ref).square().mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised ``(size, size)`` Gaussian window (float64)."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-coords.square() / (2 * sigma ** 2))
    window = g[:, None] * g[None, :]
    return window / window.sum()


def ssim_plane(x: torch.Tensor, y: torch.Tensor, data_range: float = 255.0) -> float:
    """Mean SSIM of two 2-D planes (valid window positions only)."""
    window = gaussian_window()[None, None]
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    x, y = x.double()[None, None], y.double()[None, None]
    mu_x, mu_y = F.conv2d(x, window), F.conv2d(y, window)
    var_x = F.conv2d(x * x, window) - mu_x.square()
    var_y = F.conv2d(y * y, window) - mu_y.square()
    cov = F.conv2d(x * y, window) - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2))
    return float(ssim.mean())


def ssim_y(estimate: torch.Tensor, reference: torch.Tensor, shave: int = 0) -> float:
    """SSIM between the Y channels of two RGB images in ``[0, 1]``."""
    est, ref = _y_planes(estimate, reference, shave)
    return ssim_plane(est, ref)


_ALEX_CONVS = ((0, 3, 64, 11, 4, 2), (3, 64, 192, 5, 1, 2), (6, 192, 384, 3, 1, 1), (8, 384, 256, 3, 1, 1),
               (10, 256, 256, 3, 1, 1))  # (torchvision index, in, out, kernel, stride, padding)


class LPIPS(nn.Module):
    """LPIPS distance (AlexNet features, learned linear layers); inputs ``(B, 3, H, W)`` in ``[0, 1]``."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, stride=s, padding=p) for _, i, o, k, s, p in _ALEX_CONVS)
        self.lins = nn.ModuleList(nn.Conv2d(o, 1, 1, bias=False) for _, _, o, _, _, _ in _ALEX_CONVS)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None])
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[None, :, None, None])

    def _features(self, images: torch.Tensor) -> list[torch.Tensor]:
        x, taps = ((images * 2 - 1) - self.shift) / self.scale, []
        for index, conv in enumerate(self.convs):
            if index in (1, 2):
                x = F.max_pool2d(x, 3, 2)
            x = F.relu(conv(x))
            taps.append(x / (x.square().sum(1, keepdim=True).sqrt() + 1e-10))
        return taps

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """Per-image distance ``(B,)``."""
        pairs = zip(self._features(estimate), self._features(reference), self.lins)
        return sum(lin((a - b).square()).mean((1, 2, 3)) for a, b, lin in pairs)


def _read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("weights file not found", source=path)
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        return dict(torch.load(path, map_location="cpu", weights_only=True))
    except (SafetensorError, OSError, RuntimeError, ValueError, TypeError) as err:
        raise ConfigError(f"cannot read weights ({str(err).splitlines()[0]})", source=path) from None


def load_lpips(backbone: str | Path, linear: str | Path) -> LPIPS:
    """An :class:`LPIPS` from local AlexNet feature weights and LPIPS linear-layer weights (eval mode)."""
    model = LPIPS()
    features, lins = _read_tensors(backbone), _read_tensors(linear)
    state = {}
    try:
        for n, (index, *_rest) in enumerate(_ALEX_CONVS):
            state[f"convs.{n}.weight"] = features[f"features.{index}.weight"]
            state[f"convs.{n}.bias"] = features[f"features.{index}.bias"]
            state[f"lins.{n}.weight"] = lins[f"lin{n}.model.1.weight"]
    except KeyError as err:
        raise ConfigError(f"missing LPIPS tensor {err}", source=f"{backbone} / {linear}") from None
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise ConfigError(f"LPIPS weights do not fit ({str(err).splitlines()[0]})", source=backbone) from None
    return model.eval()


__all__ = ["LPIPS", "crop_to_scale", "gaussian_window", "load_lpips", "psnr_y", "quantize", "rgb_to_y", "ssim_plane", "ssim_y"]
