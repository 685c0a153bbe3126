"""Typed, validated configuration of the degradation pipelines (YAML -> pydantic, unknown keys rejected).

Defaults are the Real-ESRGAN x4 training ranges (see :mod:`tocsr_nas.degradations.realesrgan` for the table).
The second stage has its own default classes so a partial ``stage2`` section falls back to stage-2 defaults.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, TypeVar

import pydantic
from pydantic import AfterValidator, Field

from ..config_io import read_mapping, validate

ConfigT = TypeVar("ConfigT", bound=pydantic.BaseModel)

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
ResizeMode = Literal["area", "bilinear", "bicubic"]
ALL_MODES: tuple[ResizeMode, ...] = ("area", "bilinear", "bicubic")
DEFAULT_KERNEL_SIZES: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
_SUM_TOLERANCE = 1e-6


def _ordered(value: tuple[float, float]) -> tuple[float, float]:
    if value[0] > value[1]:
        raise ValueError(f"range low {value[0]} > high {value[1]}")
    return value


def _odd_sizes(value: tuple[int, ...]) -> tuple[int, ...]:
    bad = [size for size in value if size % 2 == 0]
    if bad:
        raise ValueError(f"kernel sizes must be odd, got {bad}")
    return value


def _brackets_one(value: tuple[float, float]) -> tuple[float, float]:
    if not value[0] <= 1.0 <= value[1]:
        raise ValueError(f"scale range must contain 1 (down: [low, 1], up: [1, high]), got {list(value)}")
    return value


def _sums_to_one(model: pydantic.BaseModel) -> pydantic.BaseModel:
    total = sum(getattr(model, name) for name in type(model).model_fields)
    if abs(total - 1.0) > _SUM_TOLERANCE:
        raise ValueError(f"probabilities must sum to 1, got {total:g}")
    return model


PositiveRange = Annotated[tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]], AfterValidator(_ordered)]
NonNegativeRange = Annotated[tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(ge=0)]],
                             AfterValidator(_ordered)]
CutoffRange = Annotated[tuple[Annotated[float, Field(gt=0, le=1)], Annotated[float, Field(gt=0, le=1)]],
                        AfterValidator(_ordered)]
QualityRange = Annotated[tuple[Annotated[int, Field(ge=1, le=100)], Annotated[int, Field(ge=1, le=100)]],
                         AfterValidator(_ordered)]
KernelSizes = Annotated[tuple[Annotated[int, Field(ge=1)], ...], Field(min_length=1), AfterValidator(_odd_sizes)]
ResizeModes = Annotated[tuple[ResizeMode, ...], Field(min_length=1)]


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class KernelProbs(_Strict):
    """Probability of each blur-kernel family (must sum to 1)."""

    iso: Probability = 0.45
    aniso: Probability = 0.25
    generalized_iso: Probability = 0.12
    generalized_aniso: Probability = 0.03
    plateau_iso: Probability = 0.12
    plateau_aniso: Probability = 0.03

    _check_sum = pydantic.model_validator(mode="after")(_sums_to_one)


class BlurConfig(_Strict):
    """One blur step: a random Gaussian-family kernel, or with ``sinc_prob`` a sinc kernel.

    ``sinc_cutoff`` / ``sinc_cutoff_small`` are fractions of π, used for kernel sizes >= / < 13.
    """

    prob: Probability = 1.0
    kernel_sizes: KernelSizes = DEFAULT_KERNEL_SIZES
    kernel_probs: KernelProbs = KernelProbs()
    sigma: PositiveRange = (0.2, 3.0)
    generalized_beta: PositiveRange = (0.5, 4.0)
    plateau_beta: PositiveRange = (1.0, 2.0)
    sinc_prob: Probability = 0.1
    sinc_cutoff: CutoffRange = (0.2, 1.0)
    sinc_cutoff_small: CutoffRange = (1 / 3, 1.0)


class SecondBlurConfig(BlurConfig):
    """Stage-2 blur defaults."""

    prob: Probability = 0.8
    sigma: PositiveRange = (0.2, 1.5)


class ResizeProbs(_Strict):
    """Probability of scaling up, down or keeping the size (must sum to 1)."""

    up: Probability = 0.2
    down: Probability = 0.7
    keep: Probability = 0.1

    _check_sum = pydantic.model_validator(mode="after")(_sums_to_one)


class SecondResizeProbs(ResizeProbs):
    """Stage-2 resize-direction defaults."""

    up: Probability = 0.3
    down: Probability = 0.4
    keep: Probability = 0.3


class ResizeConfig(_Strict):
    """Random resize: ``up`` draws a factor in ``[1, scale[1]]``, ``down`` in ``[scale[0], 1]``."""

    probs: ResizeProbs = ResizeProbs()
    scale: Annotated[PositiveRange, AfterValidator(_brackets_one)] = (0.15, 1.5)
    modes: ResizeModes = ALL_MODES


class SecondResizeConfig(ResizeConfig):
    """Stage-2 resize defaults (factors relative to the final LR size)."""

    probs: SecondResizeProbs = SecondResizeProbs()
    scale: Annotated[PositiveRange, AfterValidator(_brackets_one)] = (0.3, 1.2)


class NoiseConfig(_Strict):
    """Additive Gaussian noise (σ in 8-bit levels) or Poisson noise (scaled), either optionally gray."""

    prob: Probability = 1.0
    gaussian_prob: Probability = 0.5
    gaussian_sigma: NonNegativeRange = (1.0, 30.0)
    poisson_scale: NonNegativeRange = (0.05, 3.0)
    gray_prob: Probability = 0.4


class SecondNoiseConfig(NoiseConfig):
    """Stage-2 noise defaults."""

    gaussian_sigma: NonNegativeRange = (1.0, 25.0)
    poisson_scale: NonNegativeRange = (0.05, 2.5)


class JpegConfig(_Strict):
    """JPEG re-compression with an integer quality drawn from ``quality`` (inclusive)."""

    prob: Probability = 1.0
    quality: QualityRange = (30, 95)


class StageConfig(_Strict):
    """One degradation stage: blur -> random resize -> noise -> JPEG."""

    blur: BlurConfig = BlurConfig()
    resize: ResizeConfig = ResizeConfig()
    noise: NoiseConfig = NoiseConfig()
    jpeg: JpegConfig = JpegConfig()


class SecondStageConfig(StageConfig):
    """Stage 2 with its own defaults."""

    blur: SecondBlurConfig = SecondBlurConfig()
    resize: SecondResizeConfig = SecondResizeConfig()
    noise: SecondNoiseConfig = SecondNoiseConfig()


class FinalConfig(_Strict):
    """Final step: resize to ``HR / scale`` plus sinc filter, and JPEG, in random order."""

    sinc_prob: Probability = 0.8
    kernel_sizes: KernelSizes = DEFAULT_KERNEL_SIZES
    sinc_cutoff: CutoffRange = (1 / 3, 1.0)
    modes: ResizeModes = ALL_MODES
    jpeg: JpegConfig = JpegConfig()
    jpeg_first_prob: Probability = 0.5


class RealESRGANConfig(_Strict):
    """Real-ESRGAN second-order degradation (``name: realesrgan``)."""

    name: Literal["realesrgan"] = "realesrgan"
    scale: Annotated[int, Field(ge=1)] = 4
    stage1: StageConfig = StageConfig()
    stage2: SecondStageConfig = SecondStageConfig()
    final: FinalConfig = FinalConfig()


class BicubicConfig(_Strict):
    """MATLAB-bicubic downscaling (``name: bicubic``)."""

    name: Literal["bicubic"] = "bicubic"
    scale: Annotated[int, Field(ge=1)] = 4
    antialias: bool = True
    quantize: bool = True


def load_config(path: str | Path, model: type[ConfigT]) -> ConfigT:
    """Read a YAML/JSON file and validate it into ``model``; problems raise a one-line ``ConfigError``."""
    return validate(model, read_mapping(path), source=path)


__all__ = ["ALL_MODES", "BicubicConfig", "BlurConfig", "FinalConfig", "JpegConfig", "KernelProbs", "NoiseConfig",
           "RealESRGANConfig", "ResizeConfig", "ResizeProbs", "StageConfig", "load_config"]
