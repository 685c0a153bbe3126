"""The strategy registry: ``@register_strategy("name")`` on a :class:`Strategy` subclass, ``make_strategy`` by name.

Built-ins are imported on the first lookup; ``bo`` and ``bo-prior`` need BoTorch (extra ``bo``) and is listed as unavailable,
with the extra to install, when it is missing. A new optional built-in is one more :class:`OptionalBuiltin` in
``STRATEGIES`` below; a user's strategy is a decorated class in a plug-in file or an installed package
(entry-point group ``tocsr_nas.strategies``).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from tocsr_nas.registry import OptionalBuiltin, Registry

from .base import Problem, Strategy

StrategyT = TypeVar("StrategyT", bound=type[Strategy])

STRATEGIES: Registry[type[Strategy]] = Registry(
    "strategy", group="tocsr_nas.strategies", key="strategy",
    builtins=["strategies.random_search", "strategies.evolution", "strategies.nsga2"],
    optional=[OptionalBuiltin("strategies.bo", ("bo",), ("botorch", "gpytorch"), extra="bo"),
              OptionalBuiltin("strategies.bo_prior", ("bo-prior",), ("botorch", "gpytorch"), extra="bo"),
              OptionalBuiltin("strategies.optuna_samplers", ("optuna-tpe", "optuna-gp", "optuna-nsga2"), ("optuna",),
                              extra="optuna"),
              OptionalBuiltin("strategies.nni_tuners", ("nni-tpe", "nni-evolution", "nni-anneal", "nni-random"),
                              ("nni",), extra="nni")],
)


def register_strategy(name: str) -> Callable[[StrategyT], StrategyT]:
    """Class decorator: register a strategy under ``name`` (also sets ``cls.name``)."""

    def decorate(cls: StrategyT) -> StrategyT:
        STRATEGIES.register(name, cls)
        cls.name = name
        return cls

    return decorate


def available_strategies() -> list[str]:
    """Names of the usable strategies."""
    return STRATEGIES.names()


def strategy_class(name: str) -> type[Strategy]:
    """The class registered as ``name``; unknown or unavailable names raise :class:`ConfigError`."""
    return STRATEGIES.get(name)


def make_strategy(name: str, problem: Problem, *, seed: int, **options: Any) -> Strategy:
    """Build the strategy registered as ``name``; unknown names and options raise :class:`ConfigError`."""
    return strategy_class(name)(problem, seed=seed, **options)
