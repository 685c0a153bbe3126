"""Every registered evaluator passes the conformance suite (:mod:`tocsr_nas.testing.evaluators`) on the micro space.

Each is built through its registered factory from a search's evaluation context."""
from __future__ import annotations

import numpy as np
import pytest

from evaluators import available_evaluators, make_evaluator
from evaluators.context import EvaluationContext
from evaluators.distillation import ValidationSet
from tocsr_nas.errors import ConfigError
from tocsr_nas.profiling.cost_table import build_cost_table
from tocsr_nas.search.components import validation_latents
from tocsr_nas.search.config import ValidationConfig
from tocsr_nas.supernet import Supernet
from tocsr_nas.testing import check_evaluator

from .test_fidelity import micro_vae_folder


@pytest.fixture(scope="module")
def context(micro_teacher, micro_space, tmp_path_factory) -> EvaluationContext:
    """A search's evaluation context on the micro space, as ``search.components`` builds one."""
    latents = validation_latents(micro_teacher, ValidationConfig(latents={"source": "gaussian"}, count=2), 16)
    return EvaluationContext(
        space=micro_space, teacher=micro_teacher, cache_dir=tmp_path_factory.mktemp("evaluators"),
        constraints={"gmacs": 1.0},
        shared={"cost_table": lambda: build_cost_table(micro_teacher, micro_space, ptflops=False, progress=False),
                "supernet": lambda: Supernet(micro_teacher, micro_space),
                "validation": lambda: ValidationSet.build(micro_teacher, latents, batch_size=2)})


OPTIONS = {"latency": {"warmup": 1, "repeats": 1},  # a quick table: the suite checks the interface, not the timing
           "generation": {"samples": 2, "steps": 2},
           "sr-proxy": {"steps": 1, "batch_size": 1, "crop": 32, "eval_crop": 32, "diffusion_steps": 1}}


SLOW = {"sr-proxy"}  # a training run per arch


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in available_evaluators()])
def test_registered_evaluator_conforms(name: str, context: EvaluationContext, micro_space, tmp_path) -> None:
    """Built through its registered factory, exactly as a search config naming it would build it."""
    options = dict(OPTIONS.get(name, {}))
    if name == "sr-proxy":  # the micro teacher ships no VAE
        options["vae"] = str(micro_vae_folder(tmp_path / "vae"))
    check_evaluator(make_evaluator(name, context=context, **options), micro_space, samples=2)


def test_the_suite_catches_a_nondeterministic_evaluator(context, micro_space) -> None:
    cost = make_evaluator("cost", context=context)

    class Drifting(type(cost)):
        calls = 0

        def evaluate(self, arch, budget=None):
            self.calls += 1
            return {**super().evaluate(arch, budget), "loss": float(self.calls)}

    with pytest.raises(AssertionError, match="the same arch gave other metrics"):
        check_evaluator(Drifting(context.get("cost_table")), micro_space)


def test_distillation_reuse_prefix_can_be_turned_off_without_changing_scores(context, micro_space) -> None:
    reusing = make_evaluator("distillation", context=context)
    plain = make_evaluator("distillation", context=context, reuse_prefix=False)
    assert reusing.memo is not None and plain.memo is None
    arch = micro_space.sample(np.random.default_rng(0))
    assert reusing.evaluate(arch) == plain.evaluate(arch)
    assert reusing.fingerprint == plain.fingerprint  # the memo is not part of what a score means
    with pytest.raises(ConfigError, match="reuse_prefix"):
        make_evaluator("distillation", context=context, reuse_prefix="no")
