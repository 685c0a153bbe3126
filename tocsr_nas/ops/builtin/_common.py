"""Helpers shared by the built-in ops: hyperparameter checks, GroupNorm group counts, weight copying."""
from __future__ import annotations

import logging
import numbers
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import nn

from ...errors import ConfigError

if TYPE_CHECKING:
    from ...units import UnitInfo

log = logging.getLogger(__name__)


def require_bool(unit: UnitInfo, name: str, value: object) -> bool:
    """``value`` if it is a bool; a ConfigError keyed by the unit's path otherwise."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}", key=unit.path, allowed=[True, False])
    return value


def require_int(unit: UnitInfo, name: str, value: object, *, minimum: int = 1,
                allowed: Iterable[int] | None = None) -> int:
    """``value`` if it is an int ``>= minimum`` (and in ``allowed`` when given); a ConfigError otherwise."""
    allowed = None if allowed is None else sorted(allowed)
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum
    if not ok or (allowed is not None and value not in allowed):
        raise ConfigError(f"bad {name} {value!r}", key=unit.path, allowed=allowed or f"integers >= {minimum}")
    return int(value)


def require_float(unit: UnitInfo, name: str, value: object, *, low: float, high: float | None = None) -> float:
    """``value`` as a float if ``low < value <= high``; a ConfigError otherwise."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and value > low
    if not ok or (high is not None and value > high):
        span = f"({low}, {high}]" if high is not None else f"> {low}"
        raise ConfigError(f"bad {name} {value!r}", key=unit.path, allowed=span)
    return float(value)


def group_count(channels: float, preferred: int = 32) -> int:
    """GroupNorm groups for about ``channels`` channels: ``preferred`` halved until groups hold >= 2 channels."""
    groups = max(1, preferred)
    while groups > 1 and 2 * groups > channels:
        groups //= 2
    return groups


def divisor_groups(channels: int, preferred: int = 32) -> int:
    """The largest group count ``<= preferred`` that divides ``channels`` (at least 2 channels a group if possible)."""
    for groups in range(min(preferred, max(1, channels // 2)), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


def teacher_groups(module: nn.Module | None, default: int = 32) -> int:
    """The group count of a teacher's GroupNorm, or ``default``."""
    return module.num_groups if isinstance(module, nn.GroupNorm) else default


@torch.no_grad()
def copy_matching(dst: nn.Module, src: nn.Module, *, skip: tuple[str, ...] = ()) -> list[str]:
    """Copy ``src``'s tensors into ``dst`` where names and shapes match (a linear fits a 1x1 conv).

    Names starting with a prefix in ``skip`` are left alone. Returns the names copied.
    """
    source = src.state_dict()
    copied = []
    for name, tensor in dst.state_dict().items():
        value = source.get(name)
        if value is None or name.startswith(skip) or value.numel() != tensor.numel():
            continue
        if value.shape == tensor.shape or value.squeeze().shape == tensor.squeeze().shape:
            tensor.copy_(value.reshape(tensor.shape))
            copied.append(name)
    log.debug("copied %d of %d tensors from %s", len(copied), len(dst.state_dict()), type(src).__name__)
    return copied
