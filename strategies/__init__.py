"""Search strategies behind one ask/tell interface (see :mod:`strategies.base`) and a registry.

``make_strategy("evolution", problem, seed=0, population_size=20)``; ``available_strategies()`` lists the names.
``bo`` needs BoTorch (extra ``bo``) and ``nsga2`` needs pymoo; without them they are reported as unavailable.
"""
from __future__ import annotations

import importlib

from . import evolution, random_search  # noqa: F401  (registration)
from .base import Observation, Problem, Strategy, Trial
from .registry import available_strategies, make_strategy, mark_unavailable, register_strategy, strategy_class

_OPTIONAL = {"bo": ("botorch", "gpytorch"), "nsga2": ("pymoo",)}
for _name, _packages in _OPTIONAL.items():
    try:
        importlib.import_module(f".{_name}", __name__)
    except ModuleNotFoundError as err:
        if err.name is None or err.name.split(".")[0] not in _packages:
            raise
        mark_unavailable(_name, f"needs the package '{err.name.split('.')[0]}' (pip install {_packages[0]})")

__all__ = ["Observation", "Problem", "Strategy", "Trial", "available_strategies", "make_strategy",
           "mark_unavailable", "register_strategy", "strategy_class"]
