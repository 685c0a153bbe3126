"""The degradation registry, and building a degradation from a name, a config object, a mapping or a file.

A degradation is a config model (pydantic, with a ``name`` and a ``scale`` field) plus a builder
``config -> Degradation``. Register one with::

    @register_degradation("blur_only", config=BlurOnlyConfig)
    def blur_only(config: BlurOnlyConfig) -> Degradation: ...

in a plug-in file or an installed package (entry-point group ``tocsr_nas.degradations``).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import pydantic
import torch
from torch import Tensor

from ..config_io import read_mapping, validate
from ..errors import ConfigError
from ..registry import Registry
from .bicubic import BicubicDegradation
from .config import BicubicConfig, RealESRGANConfig
from .realesrgan import RealESRGANDegradation


class Degradation(Protocol):
    """What every degradation offers: an integer ``scale`` and ``(hr, generator) -> lr``."""

    scale: int

    def __call__(self, hr: Tensor, generator: torch.Generator | int) -> Tensor: ...


@dataclasses.dataclass(frozen=True)
class DegradationSpec:
    """A registered degradation: its config model and its builder."""

    config: type[pydantic.BaseModel]
    builder: Callable[[Any], Degradation]


DEGRADATIONS: Registry[DegradationSpec] = Registry("degradation", group="tocsr_nas.degradations", key="name")
_FILE_SUFFIXES = (".yaml", ".yml", ".json")


def register_degradation(name: str, *, config: type[pydantic.BaseModel]) -> Callable[[Callable[[Any], Degradation]],
                                                                                      Callable[[Any], Degradation]]:
    """Decorator registering ``builder(config) -> Degradation`` as ``name`` with its config model."""
    return DEGRADATIONS.decorator(name, lambda builder: DegradationSpec(config, builder))


@register_degradation("bicubic", config=BicubicConfig)
def _bicubic(config: BicubicConfig) -> Degradation:
    return BicubicDegradation(config.scale, antialias=config.antialias, quantize=config.quantize)


register_degradation("realesrgan", config=RealESRGANConfig)(RealESRGANDegradation)


def degradation_config(spec: str | Path | Mapping[str, Any] | pydantic.BaseModel, *,
                       scale: int | None = None) -> pydantic.BaseModel:
    """The validated config a degradation spec stands for (see :func:`make_degradation` for ``spec``).

    Raises:
        ConfigError: unknown name, missing file, unknown key or bad value.
    """
    source: str | Path | None = None
    if isinstance(spec, pydantic.BaseModel):
        data: dict[str, Any] = spec.model_dump()
    elif isinstance(spec, Mapping):
        data = dict(spec)
    elif isinstance(spec, str) and spec in DEGRADATIONS:
        data = {"name": spec}
    elif isinstance(spec, Path) or (isinstance(spec, str) and spec.endswith(_FILE_SUFFIXES)):
        source, data = spec, read_mapping(spec)
    else:
        raise ConfigError(f"unknown degradation {spec!r}", key="name",
                          allowed=[*DEGRADATIONS.names(), "a .yaml/.yml/.json file"])
    name = data.get("name")
    degradation = DEGRADATIONS.get(name if isinstance(name, str) else repr(name), source=source)
    if scale is not None:
        data["scale"] = scale
    return validate(degradation.config, data, source=source)


def make_degradation(spec: str | Path | Mapping[str, Any] | pydantic.BaseModel, *,
                     scale: int | None = None) -> Degradation:
    """Build a degradation.

    Args:
        spec: a registered name (``bicubic``, ``realesrgan``: default settings), a config object, a mapping
            with a ``name`` key, or a YAML/JSON file holding such a mapping.
        scale: if given, overrides the config's ``scale``.

    Raises:
        ConfigError: unknown name, missing file, unknown key or bad value.
    """
    config = degradation_config(spec, scale=scale)
    return DEGRADATIONS.get(config.name).builder(config)
