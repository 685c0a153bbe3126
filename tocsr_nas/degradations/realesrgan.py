"""Real-ESRGAN second-order degradation (Wang et al., 2021), per image on the CPU, fully seeded.

Pipeline for an HR image ``(C, H, W)`` in [0, 1] and integer ``scale``:

1. stage 1 and stage 2, each: blur (with ``blur.prob``) -> random resize -> noise -> clamp -> JPEG;
   stage-1 resize factors are relative to the current size, stage-2 factors to the LR size ``H / scale``;
2. final, in random order (``jpeg_first_prob``): [resize to ``(H // scale, W // scale)`` + sinc filter
   (with ``sinc_prob``)] and [JPEG];
3. clamp to [0, 1] and round to 8-bit levels.

Defaults (the Real-ESRGAN x4 training settings; every value is a key of :class:`RealESRGANConfig`):

==============================  ===================================  ===================================
key                             stage1                               stage2
==============================  ===================================  ===================================
blur.prob                       1.0                                  0.8
blur.kernel_sizes               7, 9, ..., 21 (uniform)              7, 9, ..., 21
blur.kernel_probs               iso .45, aniso .25,                  same
                                generalized_iso .12 / _aniso .03,
                                plateau_iso .12 / _aniso .03
blur.sigma                      [0.2, 3.0]                           [0.2, 1.5]
blur.generalized_beta           [0.5, 4.0]                           [0.5, 4.0]
blur.plateau_beta               [1.0, 2.0]                           [1.0, 2.0]
blur.sinc_prob                  0.1                                  0.1
blur.sinc_cutoff (size >= 13)   [π/5, π]  (written as [0.2, 1.0])    same
blur.sinc_cutoff_small (< 13)   [π/3, π]  (written as [1/3, 1.0])    same
resize.probs up/down/keep       0.2 / 0.7 / 0.1                      0.3 / 0.4 / 0.3
resize.scale                    [0.15, 1.5]                          [0.3, 1.2]
resize.modes                    area, bilinear, bicubic (uniform)    same
noise.prob                      1.0                                  1.0
noise.gaussian_prob             0.5 (else Poisson)                   0.5
noise.gaussian_sigma (8-bit)    [1, 30]                              [1, 25]
noise.poisson_scale             [0.05, 3.0]                          [0.05, 2.5]
noise.gray_prob                 0.4                                  0.4
jpeg.prob / jpeg.quality        1.0 / [30, 95]                       1.0 / [30, 95]
==============================  ===================================  ===================================

Final: ``sinc_prob`` 0.8, ``kernel_sizes`` 7..21, ``sinc_cutoff`` [π/3, π], ``modes`` all three, ``jpeg``
1.0 / [30, 95], ``jpeg_first_prob`` 0.5. Anisotropic kernels take a rotation uniform in [-π, π]. Shape
exponents β are drawn as in Real-ESRGAN: when the range contains 1, half the time from ``[low, 1]`` and half
from ``[1, high]``. Unlike the paper (differentiable JPEG on float input), JPEG here is Pillow on the 8-bit
rounded image, and the quality is an integer.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ._random import as_generator, bernoulli, choice, randint, uniform
from .config import (
    BlurConfig,
    FinalConfig,
    KernelProbs,
    NoiseConfig,
    RealESRGANConfig,
    ResizeConfig,
    StageConfig,
    load_config,
)
from .kernels import anisotropic_kernel, filter2d, sinc_kernel
from .ops import add_gaussian_noise, add_poisson_noise, jpeg, quantize, resize

Record = dict[str, Any]

# kernel family -> (shape, isotropic, name of the β range in BlurConfig or None)
_FAMILIES: dict[str, tuple[str, bool, str | None]] = {
    "iso": ("gaussian", True, None),
    "aniso": ("gaussian", False, None),
    "generalized_iso": ("generalized", True, "generalized_beta"),
    "generalized_aniso": ("generalized", False, "generalized_beta"),
    "plateau_iso": ("plateau", True, "plateau_beta"),
    "plateau_aniso": ("plateau", False, "plateau_beta"),
}
_SMALL_SINC = 13  # kernels smaller than this use BlurConfig.sinc_cutoff_small


def _sample_beta(generator: torch.Generator, low: float, high: float) -> float:
    """β as in Real-ESRGAN: a fair coin picks ``[low, 1]`` or ``[1, high]`` when the range contains 1."""
    if low <= 1.0 <= high:
        return uniform(generator, low, 1.0) if bernoulli(generator, 0.5) else uniform(generator, 1.0, high)
    return uniform(generator, low, high)


def sample_blur_kernel(config: BlurConfig, generator: torch.Generator) -> tuple[Tensor, Record]:
    """Draw one blur kernel (float64, sums to 1) and the parameters that made it."""
    size = choice(generator, config.kernel_sizes)
    if bernoulli(generator, config.sinc_prob):
        low, high = config.sinc_cutoff_small if size < _SMALL_SINC else config.sinc_cutoff
        cutoff = uniform(generator, low, high) * math.pi
        return sinc_kernel(size, cutoff), {"type": "sinc", "size": size, "cutoff": cutoff}
    families = list(KernelProbs.model_fields)
    family = choice(generator, families, [getattr(config.kernel_probs, name) for name in families])
    shape, isotropic, beta_key = _FAMILIES[family]
    sigma_x = uniform(generator, *config.sigma)
    if isotropic:
        sigma_y, rotation = sigma_x, 0.0
    else:
        sigma_y, rotation = uniform(generator, *config.sigma), uniform(generator, -math.pi, math.pi)
    beta = _sample_beta(generator, *getattr(config, beta_key)) if beta_key else 1.0
    params = {"type": family, "size": size, "sigma_x": sigma_x, "sigma_y": sigma_y, "rotation": rotation,
              "beta": beta}
    return anisotropic_kernel(size, sigma_x, sigma_y, rotation, shape, beta), params


def _random_resize(image: Tensor, config: ResizeConfig, reference: tuple[float, float],
                   generator: torch.Generator) -> tuple[Tensor, Record]:
    probs = config.probs
    direction = choice(generator, ("up", "down", "keep"), (probs.up, probs.down, probs.keep))
    if direction == "up":
        factor = uniform(generator, 1.0, config.scale[1])
    elif direction == "down":
        factor = uniform(generator, config.scale[0], 1.0)
    else:
        factor = 1.0
    mode = choice(generator, config.modes)
    size = (max(1, int(reference[0] * factor)), max(1, int(reference[1] * factor)))
    return resize(image, size, mode), {"direction": direction, "factor": factor, "mode": mode, "size": size}


def _random_noise(image: Tensor, config: NoiseConfig, generator: torch.Generator) -> tuple[Tensor, Record]:
    gaussian = bernoulli(generator, config.gaussian_prob)
    gray = bernoulli(generator, config.gray_prob)
    if gaussian:
        sigma = uniform(generator, *config.gaussian_sigma)
        return add_gaussian_noise(image, sigma, gray, generator), {"type": "gaussian", "sigma": sigma, "gray": gray}
    scale = uniform(generator, *config.poisson_scale)
    return add_poisson_noise(image, scale, gray, generator), {"type": "poisson", "scale": scale, "gray": gray}


def _run_stage(image: Tensor, config: StageConfig, reference: tuple[float, float],
               generator: torch.Generator) -> tuple[Tensor, Record]:
    record: Record = {"blur": None, "resize": None, "noise": None, "jpeg": None}
    if bernoulli(generator, config.blur.prob):
        kernel, record["blur"] = sample_blur_kernel(config.blur, generator)
        image = filter2d(image, kernel)
    image, record["resize"] = _random_resize(image, config.resize, reference, generator)
    if bernoulli(generator, config.noise.prob):
        image, record["noise"] = _random_noise(image, config.noise, generator)
    image = image.clamp(0.0, 1.0)
    if bernoulli(generator, config.jpeg.prob):
        quality = randint(generator, *config.jpeg.quality)
        image, record["jpeg"] = jpeg(image, quality), {"quality": quality}
    return image, record


def _run_final(image: Tensor, config: FinalConfig, size: tuple[int, int],
               generator: torch.Generator) -> tuple[Tensor, Record]:
    kernel, sinc = None, None
    if bernoulli(generator, config.sinc_prob):
        kernel_size = choice(generator, config.kernel_sizes)
        cutoff = uniform(generator, *config.sinc_cutoff) * math.pi
        kernel, sinc = sinc_kernel(kernel_size, cutoff), {"type": "sinc", "size": kernel_size, "cutoff": cutoff}
    mode = choice(generator, config.modes)
    jpeg_first = bernoulli(generator, config.jpeg_first_prob)
    quality = randint(generator, *config.jpeg.quality) if bernoulli(generator, config.jpeg.prob) else None

    def resize_and_sinc(x: Tensor) -> Tensor:
        x = resize(x, size, mode)
        return filter2d(x, kernel) if kernel is not None else x

    def compress(x: Tensor) -> Tensor:
        return jpeg(x.clamp(0.0, 1.0), quality) if quality is not None else x

    image = resize_and_sinc(compress(image)) if jpeg_first else compress(resize_and_sinc(image))
    record = {"order": "jpeg_first" if jpeg_first else "resize_first", "mode": mode, "size": size, "sinc": sinc,
              "jpeg": None if quality is None else {"quality": quality}}
    return image, record


class RealESRGANDegradation:
    """Callable ``hr (C, H, W) in [0, 1], generator -> lr (C, H // scale, W // scale)``; see the module doc.

    ``last_params`` holds the parameters sampled by the latest call (``stage1``, ``stage2``, ``final``);
    :meth:`degrade` returns them instead, without touching the object.
    """

    def __init__(self, config: RealESRGANConfig | None = None) -> None:
        self.config = config if config is not None else RealESRGANConfig()
        self.scale = self.config.scale
        self.last_params: Record = {}

    @classmethod
    def from_yaml(cls, path: str | Path) -> RealESRGANDegradation:
        """Build from a YAML/JSON file holding a :class:`RealESRGANConfig` (bad keys -> ``ConfigError``)."""
        return cls(load_config(path, RealESRGANConfig))

    def __call__(self, hr: Tensor, generator: torch.Generator | int) -> Tensor:
        """Degrade one HR image; ``generator`` is a ``torch.Generator`` or an int seed."""
        lr, self.last_params = self.degrade(hr, generator)
        return lr

    def degrade(self, hr: Tensor, generator: torch.Generator | int) -> tuple[Tensor, Record]:
        """Degrade one HR image and return ``(lr, sampled_parameters)``."""
        if hr.dim() != 3 or hr.shape[0] not in (1, 3) or not torch.is_floating_point(hr):
            raise ValueError(f"expected a float image (C, H, W) with 1 or 3 channels, got {hr.dtype} {tuple(hr.shape)}")
        height, width = hr.shape[-2:]
        lr_size = (height // self.scale, width // self.scale)
        if min(lr_size) < 1:
            raise ValueError(f"image {tuple(hr.shape)} is smaller than scale {self.scale}")
        gen = as_generator(generator)
        image = hr.to(torch.float32)
        image, stage1 = _run_stage(image, self.config.stage1, (height, width), gen)
        image, stage2 = _run_stage(image, self.config.stage2, (height / self.scale, width / self.scale), gen)
        image, final = _run_final(image, self.config.final, lr_size, gen)
        return quantize(image).to(hr.dtype), {"stage1": stage1, "stage2": stage2, "final": final}
