"""Seeded HR -> LR degradations for super-resolution: MATLAB bicubic and Real-ESRGAN second-order.

Example::

    degrade = make_degradation("realesrgan", scale=4)     # or "bicubic", a config, or a YAML file
    lr = degrade(hr, torch.Generator().manual_seed(0))    # hr (C, H, W) in [0, 1] -> (C, H // 4, W // 4)
    params = degrade.last_params                           # what was sampled (Real-ESRGAN)
"""
from .bicubic import BicubicDegradation, imresize
from .config import BicubicConfig, RealESRGANConfig, load_config
from .realesrgan import RealESRGANDegradation, sample_blur_kernel
from .registry import (
    DEGRADATIONS,
    Degradation,
    DegradationSpec,
    degradation_config,
    make_degradation,
    register_degradation,
)

__all__ = ["DEGRADATIONS", "BicubicConfig", "BicubicDegradation", "Degradation", "DegradationSpec", "RealESRGANConfig",
           "RealESRGANDegradation", "degradation_config", "imresize", "load_config", "make_degradation", "register_degradation",
           "sample_blur_kernel"]
