"""Conformance suites for plug-ins: run them on your own ops, strategies, evaluators and search spaces.

::

    from tocsr_nas.testing import check_evaluator, check_op, check_space, check_strategy

    check_op("my_block", settings=[{"width": 0.5}])      # on the shipped tiny-ldm teacher
    check_strategy(MyStrategy, options={"population_size": 6})
    check_space(search_spaces.load("my_space.yaml"))
    check_evaluator(MyEvaluator(table), space)

Each raises ``AssertionError`` naming the first broken property; the project's own tests run them on every
registered entry. The modules import torch and the plug-in packages, so import them only in tests.
"""
from .evaluators import check_evaluator
from .ops import OpBench, check_op
from .spaces import TINY_SPACE, TOY_SPACE, check_space, toy_space
from .strategies import Synthetic, check_strategy

__all__ = ["TINY_SPACE", "TOY_SPACE", "OpBench", "Synthetic", "check_evaluator", "check_op", "check_space",
           "check_strategy", "toy_space"]
