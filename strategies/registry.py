"""The strategy registry: ``@register_strategy("name")`` on a :class:`Strategy` subclass, ``make_strategy`` by name."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from tocsr_nas.errors import ConfigError

from .base import Problem, Strategy

StrategyT = TypeVar("StrategyT", bound=type[Strategy])
_STRATEGIES: dict[str, type[Strategy]] = {}
_UNAVAILABLE: dict[str, str] = {}  # name -> why it cannot be built here (a missing optional dependency)


def register_strategy(name: str) -> Callable[[StrategyT], StrategyT]:
    """Class decorator: register a strategy under ``name`` (also sets ``cls.name``)."""

    def decorator(cls: StrategyT) -> StrategyT:
        if name in _STRATEGIES and _STRATEGIES[name] is not cls:
            raise ValueError(f"strategy '{name}' is already registered by {_STRATEGIES[name].__qualname__}")
        cls.name = name
        _STRATEGIES[name] = cls
        return cls

    return decorator


def mark_unavailable(name: str, reason: str) -> None:
    """Record that strategy ``name`` exists but cannot be built in this environment, and why."""
    _UNAVAILABLE[name] = reason


def available_strategies() -> list[str]:
    """Names of the registered strategies."""
    return sorted(_STRATEGIES)


def strategy_class(name: str) -> type[Strategy]:
    """The class registered as ``name``."""
    if name not in _STRATEGIES and name in _UNAVAILABLE:
        raise ConfigError(f"strategy '{name}' is unavailable: {_UNAVAILABLE[name]}", key="strategy",
                          allowed=available_strategies())
    if name not in _STRATEGIES:
        raise ConfigError(f"unknown strategy '{name}'", key="strategy", allowed=available_strategies())
    return _STRATEGIES[name]


def make_strategy(name: str, problem: Problem, *, seed: int, **options: Any) -> Strategy:
    """Build the strategy registered as ``name``; unknown names and options raise :class:`ConfigError`."""
    return strategy_class(name)(problem, seed=seed, **options)
