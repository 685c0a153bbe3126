"""Evaluators: ``evaluate(arch, budget) -> metrics`` behind one interface and a registry.

``cost`` (cheap, exact, decides feasibility) and ``distillation`` (expensive: the student's noise prediction vs
the teacher's on a fixed validation set). ``make_evaluator(name, **kwargs)``; ``available_evaluators()``.
"""
from .base import EVALUATORS, Evaluator, available_evaluators, make_evaluator, register_evaluator

__all__ = ["EVALUATORS", "Evaluator", "available_evaluators", "make_evaluator", "register_evaluator"]
