"""Search strategies behind one ask/tell interface (see :mod:`strategies.base`) and a registry.

``make_strategy("evolution", problem, seed=0, population_size=20)``; ``available_strategies()`` lists the names.
``bo`` needs BoTorch (extra ``bo``) and ``nsga2`` needs pymoo; ``optuna-*`` need Optuna (extra ``optuna``) and
``nni-*`` NNI (extra ``nni``); without them they are reported as unavailable.
"""
from __future__ import annotations

import importlib
import importlib.util

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

# strategies over other tools' optimisers: registered only where the tool is installed, which they import lazily
_EXTERNAL = {"optuna_samplers": ("optuna", ("optuna-tpe", "optuna-gp", "optuna-nsga2")),
             "nni_tuners": ("nni", ("nni-tpe", "nni-evolution", "nni-anneal", "nni-random"))}
for _module, (_package, _names) in _EXTERNAL.items():
    if importlib.util.find_spec(_package) is None:
        for _name in _names:
            mark_unavailable(_name, f"needs the package '{_package}' (pip install tocsr-nas[{_package}])")
    else:
        importlib.import_module(f".{_module}", __name__)

__all__ = ["Observation", "Problem", "Strategy", "Trial", "available_strategies", "make_strategy",
           "mark_unavailable", "register_strategy", "strategy_class"]
