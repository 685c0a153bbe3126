"""The distillation evaluator's prefix memo: exact reuse of upstream block outputs (same scores bit for bit)."""
from __future__ import annotations

import numpy as np
import pytest

import search_spaces
from evaluators.distillation import DistillationEvaluator, FidelityOptions, ValidationSet
from evaluators.prefix_memo import top_blocks
from tocsr_nas.search.components import validation_latents
from tocsr_nas.search.config import ValidationConfig
from tocsr_nas.supernet import Supernet

from .conftest import write_space

PER_UNIT = """
name: micro_up
teacher: {teacher}
candidates:
  resnet: [teacher, identity, {op: slim_resnet, width: 0.5}]
  transformer: [teacher, identity, linear_attention]
stages:
  - {name: up, units: ["up_blocks.1.*"], per_unit: true}
"""


def archs(space: search_spaces.SearchSpace, count: int) -> list:
    """The first ``count`` archs in index order (long shared prefixes), then ``count`` random ones."""
    ordered = [space.decode(np.unravel_index(i, space.cardinalities)) for i in range(count)]
    rng = np.random.default_rng(0)
    picked = rng.choice(space.size, count, replace=False)
    return ordered + [space.decode(np.unravel_index(int(i), space.cardinalities)) for i in picked]


@pytest.mark.parametrize("kind", ["stages", "per-unit"])
def test_scores_with_the_memo_are_bit_for_bit_those_without(kind, micro_teacher, micro_space, tmp_path) -> None:
    space = micro_space if kind == "stages" else search_spaces.load(
        write_space(tmp_path, PER_UNIT))
    latents = validation_latents(micro_teacher, ValidationConfig(latents={"source": "gaussian"}, count=4), 16)
    validation = ValidationSet.build(micro_teacher, latents, batch_size=2)
    evaluator = DistillationEvaluator(Supernet(micro_teacher, space), validation,
                                      options=FidelityOptions(prediction="x0", baseline="identity"))
    memo = evaluator.memo
    chosen = archs(space, 5)
    with_memo = [evaluator.evaluate(a) for a in chosen]
    evaluator.memo = None
    without = [evaluator.evaluate(a) for a in chosen]
    assert with_memo == without  # exact float equality, every metric
    assert memo.hits > 0 and memo.misses > 0
    assert not any("forward" in vars(m) for _, m in top_blocks(evaluator.supernet.unet))  # forwards restored
