"""Cost table: cost(arch) is an exact sum that agrees with whole-model counts of the extracted UNet."""
from __future__ import annotations

import numpy as np
import pytest

import search_spaces
from tocsr_nas.errors import ConfigError
from tocsr_nas.profiling import count_params
from tocsr_nas.profiling.cost_table import CostTable, build_cost_table, verify_cost_table
from tocsr_nas.teachers import load_teacher

from .conftest import write_space


@pytest.fixture(scope="module")
def table(micro_teacher, micro_space):
    return build_cost_table(micro_teacher, micro_space, progress=False)


def test_teacher_arch_costs_the_teacher(table, micro_teacher, micro_space):
    cost = table.cost(micro_space.teacher_arch())
    assert cost == table.teacher_total
    assert cost.params == count_params(micro_teacher.unet)
    assert cost.macs > cost.macs_no_attention > 0  # attention matmuls are counted, and separable


def test_cost_matches_whole_model_counts(table, micro_teacher, micro_space):
    rng = np.random.default_rng(0)
    archs = [micro_space.teacher_arch()] + [micro_space.sample(rng) for _ in range(5)]
    check = verify_cost_table(table, micro_teacher, archs)
    assert (check.params_table == check.params_model).all()
    assert check.macs_rel_error.max() < 0.005
    assert check.macs_no_attention_rel_error.max() < 0.005


def test_identity_everywhere_leaves_only_fixed_parts(table, micro_space):
    labels = {d.name: "I" for d in micro_space.decisions}
    cost = table.cost(micro_space.arch(labels))
    projections = table.to_frame().query("label == 'I'")  # resnets that change width keep a 1x1 projection
    assert cost.params == table.fixed.params + projections.params.sum()


def test_vectorised_costs_agree(table, micro_space):
    rng = np.random.default_rng(1)
    archs = [micro_space.sample(rng) for _ in range(10)]
    matrix = table.cost_matrix(np.stack([micro_space.encode(a) for a in archs]))
    for arch, row in zip(archs, matrix):
        cost = table.cost(arch)
        assert (cost.params, cost.macs, cost.macs_no_attention) == tuple(row.astype(int))


def test_ptflops_cross_check_is_recorded(table):
    frame = table.to_frame()
    assert "ptflops_macs" in frame
    convs = frame[(frame.op == "slim_resnet")]
    assert np.allclose(convs.ptflops_macs, convs.macs_no_attention, rtol=0.1)


def test_save_load_and_refuse_other_space(table, micro_space, tmp_path):
    path = table.save(tmp_path / "table.json")
    loaded = CostTable.load(path, micro_space)
    arch = micro_space.sample(np.random.default_rng(2))
    assert loaded.cost(arch) == table.cost(arch)
    other = search_spaces.load(write_space(tmp_path, """
name: other
teacher: {teacher}
candidates: {resnet: [teacher, identity]}
stages: [{name: down, units: ["down_blocks.*"]}]
""", "other.yaml"))
    with pytest.raises(ConfigError, match="written for space 'micro'"):
        CostTable.load(path, other)


def test_default_space_reaches_the_paper_ratios():
    """tiny_ldm contains archs 6.6x smaller in params and 2.8x in MACs than its teacher (the paper's ratios).

    One such arch skips every resnet (a 1x1 projection where widths change) and uses linear attention.
    """
    space = search_spaces.load("tiny_ldm")
    table = build_cost_table(load_teacher("tiny-ldm"), space, ptflops=False, progress=False)
    smallest = space.arch({d.name: ("lin" if d.kind == "transformer" else "I") for d in space.decisions})
    ratios = table.ratios(smallest)
    assert ratios["params"] >= 6.6 and ratios["macs"] >= 2.8


@pytest.mark.slow
@pytest.mark.parametrize("name", search_spaces.available_spaces())
def test_shipped_space_costs_match_20_archs(name):
    space = search_spaces.load(name)
    teacher = load_teacher(space.teacher)
    table = build_cost_table(teacher, space, ptflops=False, progress=False)
    rng = np.random.default_rng(0)
    check = verify_cost_table(table, teacher, [space.sample(rng) for _ in range(20)])
    assert (check.params_table == check.params_model).all()
    assert check.macs_rel_error.max() < 0.005 and check.macs_no_attention_rel_error.max() < 0.005
