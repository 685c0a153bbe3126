"""The evaluator interface and registry.

An evaluator maps an architecture to metrics: ``evaluator.evaluate(arch, budget) -> {name: value}``. Cheap ones
(``cheap = True``, e.g. the cost table) run first and decide feasibility; expensive ones (the distillation loss)
run only for feasible archs. ``fingerprint`` identifies an evaluator's configuration, so results can be cached by
``(fingerprint, arch_id, budget)``.

Register an evaluator with ``@register_evaluator("name")`` (in a plug-in file or a package's
``tocsr_nas.evaluators`` entry point); ``make_evaluator(name, **kwargs)`` builds one by name.
"""
from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

from tocsr_nas.arch import Arch
from tocsr_nas.registry import Registry


class Evaluator(abc.ABC):
    """Base class of evaluators."""

    name: ClassVar[str]
    cheap: ClassVar[bool] = False

    @abc.abstractmethod
    def evaluate(self, arch: Arch, budget: int | None = None) -> dict[str, float]:
        """Metrics of ``arch``; ``budget`` bounds the work (e.g. validation batches), ``None`` = the default."""

    def feasible(self, metrics: dict[str, float]) -> bool:
        """Whether metrics from this evaluator satisfy its constraints (only cheap evaluators constrain)."""
        return True

    @property
    def fingerprint(self) -> str:
        """Identifies this evaluator's configuration (for caching results)."""
        return self.name


EvaluatorFactory = Callable[..., Evaluator]
EVALUATORS: Registry[EvaluatorFactory] = Registry(
    "evaluator", group="tocsr_nas.evaluators", key="evaluators",
    builtins=["evaluators.cost", "evaluators.distillation", "evaluators.generation", "evaluators.latency",
              "evaluators.sr_proxy"],
)


def register_evaluator(name: str) -> Callable[[EvaluatorFactory], EvaluatorFactory]:
    """Register an evaluator factory under ``name``: ``factory(context, **options) -> Evaluator``, where
    ``context`` is the search's :class:`evaluators.context.EvaluationContext` and ``options`` come from the
    search config (``evaluators: [{name: ..., options: {...}}]``)."""
    return EVALUATORS.decorator(name)


def available_evaluators() -> list[str]:
    """Names of the usable evaluators."""
    return EVALUATORS.names()


def make_evaluator(name: str, **kwargs: Any) -> Evaluator:
    """Build the evaluator registered as ``name``; an unknown name lists the registered ones."""
    return EVALUATORS.get(name)(**kwargs)
