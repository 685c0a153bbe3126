"""The conformance suite every evaluator must pass.

A plug-in author runs it on an instance built for a space::

    from tocsr_nas.testing import check_evaluator
    check_evaluator(MyEvaluator(...), space)
"""
from __future__ import annotations

import math

import numpy as np

from evaluators import Evaluator
from search_spaces import SearchSpace


def check_evaluator(evaluator: Evaluator, space: SearchSpace, *, samples: int = 3, seed: int = 0) -> None:
    """Metrics are finite floats with stable names, repeatable for the same arch; ``feasible`` is a bool;
    the fingerprint is a non-empty string that does not change by evaluating.

    Raises:
        AssertionError: naming the evaluator and the broken property.
    """
    name = getattr(evaluator, "name", type(evaluator).__name__)
    assert isinstance(evaluator, Evaluator), f"{name}: not an Evaluator"
    assert isinstance(evaluator.cheap, bool), f"{name}: cheap must be a bool"
    fingerprint = evaluator.fingerprint
    assert isinstance(fingerprint, str) and fingerprint, f"{name}: fingerprint must be a non-empty string"
    rng = np.random.default_rng(seed)
    archs = [space.teacher_arch(), *(space.sample(rng) for _ in range(samples))]
    keys = None
    for arch in archs:
        metrics = evaluator.evaluate(arch)
        assert isinstance(metrics, dict) and metrics, f"{name}: evaluate must return a non-empty dict"
        assert all(isinstance(k, str) for k in metrics), f"{name}: metric names must be strings"
        assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values()), f"{name}: {metrics}"
        assert keys is None or set(metrics) == keys, f"{name}: metric names change between archs"
        keys = set(metrics)
        assert evaluator.evaluate(arch) == metrics, f"{name}: the same arch gave other metrics"
        assert isinstance(evaluator.feasible(metrics), bool), f"{name}: feasible must return a bool"
    assert evaluator.fingerprint == fingerprint, f"{name}: evaluating changed the fingerprint"
