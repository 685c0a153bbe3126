"""Every registered evaluator passes the conformance suite (:mod:`tocsr_nas.testing.evaluators`) on the micro space.

A new evaluator adds one builder to ``BUILDERS`` (a registered name without one fails here)."""
from __future__ import annotations

import pytest

from evaluators import available_evaluators, make_evaluator
from evaluators.distillation import ValidationSet
from tocsr_nas.profiling.cost_table import build_cost_table
from tocsr_nas.search.components import validation_latents
from tocsr_nas.search.config import ValidationConfig
from tocsr_nas.supernet import Supernet
from tocsr_nas.testing import check_evaluator


@pytest.fixture(scope="module")
def context(micro_teacher, micro_space):
    table = build_cost_table(micro_teacher, micro_space, ptflops=False, progress=False)
    latents = validation_latents(micro_teacher, ValidationConfig(latents={"source": "gaussian"}, count=2), 16)
    return {"table": table, "validation": ValidationSet.build(micro_teacher, latents, batch_size=2),
            "supernet": Supernet(micro_teacher, micro_space)}


BUILDERS = {
    "cost": lambda c: make_evaluator("cost", table=c["table"], max_gmacs=1.0),
    "distillation": lambda c: make_evaluator("distillation", supernet=c["supernet"], validation=c["validation"]),
}


@pytest.mark.parametrize("name", available_evaluators())
def test_registered_evaluator_conforms(name: str, context, micro_space) -> None:
    assert name in BUILDERS, f"add a builder for the evaluator '{name}' to BUILDERS"
    check_evaluator(BUILDERS[name](context), micro_space, samples=2)


def test_the_suite_catches_a_nondeterministic_evaluator(context, micro_space) -> None:
    cost = BUILDERS["cost"](context)

    class Drifting(type(cost)):
        calls = 0

        def evaluate(self, arch, budget=None):
            self.calls += 1
            return {**super().evaluate(arch, budget), "loss": float(self.calls)}

    with pytest.raises(AssertionError, match="the same arch gave other metrics"):
        check_evaluator(Drifting(context["table"]), micro_space)
