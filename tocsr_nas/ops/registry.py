"""The registry of candidate ops (surrogate blocks).

An op is a builder ``builder(unit, teacher, **hparams) -> nn.Module``: given the :class:`~tocsr_nas.units.UnitInfo`
of the unit it replaces and the teacher's module at that unit, it returns a module with exactly the unit's call
signature and output shape. Its keyword-only parameters are its hyperparameters, which YAML search spaces set.

Register an op in your own code with the decorator::

    from tocsr_nas.ops import register_op

    @register_op("my_block", kinds={"resnet"}, short="mine")
    def my_block(unit, teacher, *, width: float = 0.5):
        return MyBlock(unit.in_channels, unit.out_channels, unit.temb_channels, width)

in a local plug-in file (``plugins: [my_ops.py]`` in a space YAML, or ``--plugins``; see
:mod:`tocsr_nas.plugins`), or from an installed package through the ``tocsr_nas.ops`` entry-point group (the entry
point names a module whose import registers its ops, or the decorated builder itself). ``OPS`` is the op
:class:`~tocsr_nas.registry.Registry`; ``tocsr_nas.testing.check_op`` is the conformance suite.
"""
from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from torch import nn

from ..errors import ConfigError
from ..registry import Registry

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


OPS: Registry[OpSpec] = Registry("op", group=ENTRY_POINT_GROUP, key="op", builtins=["tocsr_nas.ops.builtin"])


def register_op(name: str, *, kinds: Iterable[str], short: str | None = None) -> Callable[[OpBuilder], OpBuilder]:
    """Decorator registering ``builder`` as the op ``name`` for the unit ``kinds`` it can replace."""
    kinds = frozenset(kinds)
    unknown = kinds - set(UNIT_KINDS)
    if unknown:
        raise ConfigError(f"unknown unit kind(s) {sorted(unknown)} for op '{name}'", allowed=UNIT_KINDS)
    return OPS.decorator(name, lambda builder: OpSpec(name=name, short=short or name, kinds=kinds, builder=builder))


def registered_ops() -> dict[str, OpSpec]:
    """All registered ops (built-ins, decorated user ops, plug-ins, entry points) by name."""
    return OPS.entries()


def get_op(name: str, *, source: str | None = None, key: str | None = None) -> OpSpec:
    """The op registered as ``name``; a one-line error listing the registered ones otherwise."""
    return OPS.get(name, source=source, key=key)


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
    """Build op ``name`` for ``unit`` (whose teacher module is ``teacher``) with ``hparams``.

    An exception inside a plug-in's builder becomes a one-line ConfigError naming the plug-in, the op and the unit.
    """
    op = get_op(name)
    hparams = dict(hparams or {})
    if unit.kind not in op.kinds:
        raise ConfigError(f"op '{name}' cannot replace a {unit.kind} unit ({unit.path})", allowed=sorted(op.kinds))
    check_hparams(op, hparams, key=unit.path)
    origin = OPS.origin(name)
    if not origin.startswith(("plugin ", "entry point ")):
        return op.builder(unit, teacher, **hparams)
    try:
        return op.builder(unit, teacher, **hparams)
    except Exception as err:  # noqa: BLE001  (a plug-in's bug is reported as bad input naming the plug-in)
        detail = str(err).splitlines()[0] if str(err) else ""
        raise ConfigError(f"{origin}: op '{name}' failed on unit {unit.path}: {type(err).__name__}: {detail}") from err
