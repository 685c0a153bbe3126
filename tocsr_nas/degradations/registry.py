"""Build a degradation from a name, a config object, a mapping or a YAML/JSON file."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from ..config_io import read_mapping, validate
from ..errors import ConfigError
from .bicubic import BicubicDegradation
from .config import BicubicConfig, RealESRGANConfig
from .realesrgan import RealESRGANDegradation


class Degradation(Protocol):
    """What every degradation offers: an integer ``scale`` and ``(hr, generator) -> lr``."""

    scale: int

    def __call__(self, hr: Tensor, generator: torch.Generator | int) -> Tensor: ...


def _bicubic(config: BicubicConfig) -> Degradation:
    return BicubicDegradation(config.scale, antialias=config.antialias, quantize=config.quantize)


DEGRADATIONS: dict[str, tuple[type[BicubicConfig] | type[RealESRGANConfig], Callable[[Any], Degradation]]] = {
    "bicubic": (BicubicConfig, _bicubic),
    "realesrgan": (RealESRGANConfig, RealESRGANDegradation),
}
_FILE_SUFFIXES = (".yaml", ".yml", ".json")


def make_degradation(spec: str | Path | Mapping[str, Any] | BicubicConfig | RealESRGANConfig, *,
                     scale: int | None = None) -> Degradation:
    """Build a degradation.

    Args:
        spec: a registered name (``bicubic``, ``realesrgan``: default settings), a config object, a mapping
            with a ``name`` key, or a YAML/JSON file holding such a mapping.
        scale: if given, overrides the config's ``scale``.

    Raises:
        ConfigError: unknown name, missing file, unknown key or bad value.
    """
    source: str | Path | None = None
    if isinstance(spec, (BicubicConfig, RealESRGANConfig)):
        data: dict[str, Any] = spec.model_dump()
    elif isinstance(spec, Mapping):
        data = dict(spec)
    elif isinstance(spec, str) and spec in DEGRADATIONS:
        data = {"name": spec}
    elif isinstance(spec, Path) or (isinstance(spec, str) and spec.endswith(_FILE_SUFFIXES)):
        source, data = spec, read_mapping(spec)
    else:
        raise ConfigError(f"unknown degradation {spec!r}", key="name",
                          allowed=[*DEGRADATIONS, "a .yaml/.yml/.json file"])
    name = data.get("name")
    if name not in DEGRADATIONS:
        raise ConfigError(f"unknown degradation {name!r}", source=source, key="name", allowed=list(DEGRADATIONS))
    if scale is not None:
        data["scale"] = scale
    config_type, build = DEGRADATIONS[name]
    return build(validate(config_type, data, source=source))
