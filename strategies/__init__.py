"""Search strategies behind one ask/tell interface (see :mod:`strategies.base`) and a registry.

``make_strategy("evolution", problem, seed=0, population_size=20)``; ``available_strategies()`` lists the names.
``bo`` needs BoTorch (extra ``bo``), ``optuna-*`` Optuna (extra ``optuna``) and ``nni-*`` NNI (extra ``nni``);
without them they are reported as unavailable with the extra to install.
"""
from __future__ import annotations

from .base import Observation, Problem, Strategy, Trial
from .registry import STRATEGIES, available_strategies, make_strategy, register_strategy, strategy_class

__all__ = ["STRATEGIES", "Observation", "Problem", "Strategy", "Trial", "available_strategies", "make_strategy",
           "register_strategy", "strategy_class"]
