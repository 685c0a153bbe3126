"""The registry of candidate ops (surrogate blocks).

An op is a builder ``builder(unit, teacher, **hparams) -> nn.Module``: given the :class:`~tocsr_nas.units.UnitInfo`
of the unit it replaces and the teacher's module at that unit, it returns a module with exactly the unit's call
signature and output shape. Its keyword-only parameters are its hyperparameters, which YAML search spaces set.

Register an op in your own code with the decorator::

    from tocsr_nas.ops import register_op

    @register_op("my_block", kinds={"resnet"}, short="mine")
    def my_block(unit, teacher, *, width: float = 0.5):
        return MyBlock(unit.in_channels, unit.out_channels, unit.temb_channels, width)

or from an installed package through the ``tocsr_nas.ops`` entry-point group (the entry point names a module
whose import registers its ops, or the decorated builder itself).
"""
from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from torch import nn

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..units import UnitInfo

UNIT_KINDS = ("resnet", "transformer", "downsampler", "upsampler")
ENTRY_POINT_GROUP = "tocsr_nas.ops"

OpBuilder = Callable[..., nn.Module]


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """A registered op: its name, a short label for arch strings, the unit kinds it can replace, its builder."""

    name: str
    short: str
    kinds: frozenset[str]
    builder: OpBuilder

    @property
    def hparams(self) -> dict[str, Any]:
        """Hyperparameter names and defaults (``inspect.Parameter.empty`` when required)."""
        params = inspect.signature(self.builder).parameters.values()
        return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


_REGISTRY: dict[str, OpSpec] = {}
_entry_points_loaded = False


def register_op(name: str, *, kinds: Iterable[str], short: str | None = None) -> Callable[[OpBuilder], OpBuilder]:
    """Decorator registering ``builder`` as the op ``name`` for the unit ``kinds`` it can replace."""
    kinds = frozenset(kinds)
    unknown = kinds - set(UNIT_KINDS)
    if unknown:
        raise ConfigError(f"unknown unit kind(s) {sorted(unknown)} for op '{name}'", allowed=UNIT_KINDS)

    def decorate(builder: OpBuilder) -> OpBuilder:
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ConfigError(f"op '{name}' is already registered")
        _REGISTRY[name] = OpSpec(name=name, short=short or name, kinds=kinds, builder=builder)
        return builder

    return decorate


def _load_entry_points() -> None:
    global _entry_points_loaded
    if not _entry_points_loaded:
        _entry_points_loaded = True
        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            entry_point.load()


def registered_ops() -> dict[str, OpSpec]:
    """All registered ops (built-ins, decorated user ops, entry points) by name."""
    from . import builtin  # noqa: F401, PLC0415  (registers the built-in ops)

    _load_entry_points()
    return dict(_REGISTRY)


def get_op(name: str, *, source: str | None = None, key: str | None = None) -> OpSpec:
    """The op registered as ``name``; a one-line error listing the registered ones otherwise."""
    ops = registered_ops()
    if name not in ops:
        raise ConfigError(f"unknown op '{name}'", source=source, key=key, allowed=list(ops))
    return ops[name]


def check_hparams(op: OpSpec, hparams: dict[str, Any], *, source: str | None = None, key: str | None = None) -> None:
    """Refuse hyperparameters the op does not take, and missing required ones."""
    accepted = op.hparams
    for name in hparams:
        if name not in accepted:
            raise ConfigError(f"unknown hyperparameter '{name}' for op '{op.name}'", source=source, key=key,
                              allowed=list(accepted) or "none")
    for name, default in accepted.items():
        if default is inspect.Parameter.empty and name not in hparams:
            raise ConfigError(f"op '{op.name}' needs hyperparameter '{name}'", source=source, key=key)


def build_op(name: str, unit: UnitInfo, teacher: nn.Module, hparams: dict[str, Any] | None = None) -> nn.Module:
    """Build op ``name`` for ``unit`` (whose teacher module is ``teacher``) with ``hparams``."""
    op = get_op(name)
    hparams = dict(hparams or {})
    if unit.kind not in op.kinds:
        raise ConfigError(f"op '{name}' cannot replace a {unit.kind} unit ({unit.path})", allowed=sorted(op.kinds))
    check_hparams(op, hparams, key=unit.path)
    return op.builder(unit, teacher, **hparams)
