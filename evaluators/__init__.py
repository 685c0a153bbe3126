"""Evaluators: ``evaluate(arch, budget) -> metrics`` behind one interface and a registry.

``cost`` (cheap, exact, decides feasibility), ``latency``, ``distillation`` (expensive: the student's noise
prediction vs the teacher's on a fixed validation set, with fidelity options), ``generation`` (student vs teacher
DDIM samples) and ``sr-proxy`` (a budgeted SR adaptation scored on held-out crops). ``make_evaluator(name, **kwargs)``; ``available_evaluators()``.
"""
from .base import EVALUATORS, Evaluator, available_evaluators, make_evaluator, register_evaluator

__all__ = ["EVALUATORS", "Evaluator", "available_evaluators", "make_evaluator", "register_evaluator"]
