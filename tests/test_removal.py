"""Exact structural removal (BK-SDM): the ``drop`` op, sampler levels, and BK-SDM as archs of ``sd15_bk``."""
from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from diffusers import UNet2DConditionModel

import search_spaces
from search_spaces.bk_sdm import VARIANTS, bk_sdm_arch
from tocsr_nas.compact import CompactUNet, UnitChoice
from tocsr_nas.errors import ConfigError
from tocsr_nas.ops.registry import build_op
from tocsr_nas.profiling import count_params
from tocsr_nas.profiling.cost_table import build_cost_table, verify_cost_table
from tocsr_nas.supernet import Supernet
from tocsr_nas.teachers import load_teacher, unet_skeleton
from tocsr_nas.units import build_unit_graph, unit_infos

from .conftest import DATA

MICRO_BK = DATA / "micro-bk.yaml"
MICRO_BK_SPACE = f"""
name: micro_bk
teacher: {MICRO_BK}
candidates:
  resnet: [teacher, drop]
  transformer: [teacher, drop]
  downsampler: [teacher, drop]
  upsampler: [teacher, drop]
stages:
  - name: down
    per_unit: true
    units: ["down_blocks.0.resnets.*", "down_blocks.0.attentions.*", "down_blocks.1.resnets.1",
            "down_blocks.1.attentions.*", "down_blocks.1.downsamplers.0", "down_blocks.2.*"]
  - {{name: mid, per_unit: true, units: ["mid_block.*"]}}
  - name: up
    per_unit: true
    units: ["up_blocks.0.*", "up_blocks.1.resnets.*", "up_blocks.1.attentions.*", "up_blocks.2.resnets.[12]",
            "up_blocks.2.attentions.*"]
"""


def reduced_config(variant: str) -> dict:
    """The diffusers config of the micro teacher with BK-SDM ``variant``'s blocks removed."""
    config = yaml.safe_load(MICRO_BK.read_text())["unet"]
    config["layers_per_block"] = 1
    if variant in ("small", "tiny"):
        config["mid_block_type"] = None
    if variant == "tiny":
        config.update(block_out_channels=[16, 32], down_block_types=["CrossAttnDownBlock2D"] * 2,
                      up_block_types=["CrossAttnUpBlock2D"] * 2)
    return config


@pytest.fixture(scope="module")
def micro_bk(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("spaces") / "micro_bk.yaml"
    path.write_text(MICRO_BK_SPACE)
    space = search_spaces.load(path)
    teacher = load_teacher(MICRO_BK, seed=0)
    return teacher, space, Supernet(teacher, space)


@pytest.mark.parametrize("variant", VARIANTS)
def test_drop_equals_reduced_diffusers_unet(micro_bk, variant: str) -> None:
    """Extracted BK archs have the reduced UNet's params and, with its weights loaded there, the same outputs."""
    teacher, space, supernet = micro_bk
    compact = supernet.extract(bk_sdm_arch(space, variant))
    reduced = UNet2DConditionModel(**reduced_config(variant)).eval()
    assert count_params(compact) == count_params(reduced)
    ours, theirs = compact.state_dict(), reduced.state_dict()
    assert [v.shape for v in ours.values()] == [v.shape for v in theirs.values()]
    reduced.load_state_dict(dict(zip(theirs, ours.values())))
    inputs = teacher.example_inputs(batch_size=2)
    with torch.no_grad():
        expected = reduced(**inputs).sample
        assert torch.equal(compact(**inputs).sample, expected)
        supernet.activate(bk_sdm_arch(space, variant))
        assert torch.equal(supernet(**inputs).sample, expected)
    assert expected.shape == inputs["sample"].shape


@pytest.mark.parametrize("n_random", [1, pytest.param(6, marks=pytest.mark.slow)])
def test_drop_cost_table_exact(micro_bk, n_random: int) -> None:
    """BK-Tiny and random archs cost exactly what their extracted UNets count (params and fvcore MACs)."""
    teacher, space, _ = micro_bk
    table = build_cost_table(teacher, space, ptflops=False, progress=False)
    rng = np.random.default_rng(0)
    archs = [bk_sdm_arch(space, "tiny")] + [space.sample(rng) for _ in range(n_random)]
    check = verify_cost_table(table, teacher, archs)
    assert (check.params_table == check.params_model).all()
    assert check.macs_rel_error.max() == 0 and check.macs_no_attention_rel_error.max() == 0
    for variant in VARIANTS:
        assert table.cost(bk_sdm_arch(space, variant)).params == count_params(UNet2DConditionModel(**reduced_config(variant)))


def test_dropping_a_sampler_removes_its_level(micro_bk) -> None:
    _, space, _ = micro_bk
    arch = space.arch({"up_blocks.0.upsamplers.0:U": "X"})
    canonical = space.canonical(arch)
    dropped = {name for name, label in canonical if label == "X"}
    assert "down_blocks.1.downsamplers.0:D" in dropped and "mid_block.attentions.0:A" in dropped
    assert "down_blocks.2.resnets.0:R" in dropped and "down_blocks.1.attentions.0:A" not in dropped
    assert space.canonical(canonical) == canonical
    indices = space.encode(arch)[None]
    assert (space.canonical_indices(indices) == space.encode(canonical)).all()


def test_drop_refuses_channel_changes(micro_bk) -> None:
    teacher, _, supernet = micro_bk
    units = supernet.units
    for path in ("down_blocks.1.resnets.0", "up_blocks.2.resnets.0"):  # 16 -> 32, and 32 + 16 skip -> 16
        with pytest.raises(ConfigError, match="cannot drop resnet"):
            build_op("drop", units[path], teacher.unet.get_submodule(path))


def test_space_refuses_a_level_it_cannot_remove(tmp_path: Path) -> None:
    """A sampler may offer drop only if every unit of its level is droppable (one-line error otherwise)."""
    text = MICRO_BK_SPACE.replace('"down_blocks.1.downsamplers.0", ', '"down_blocks.0.downsamplers.0", ')
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="down_blocks.0.downsamplers.0 removes"):
        search_spaces.load(path)


def _meta_inputs(channels: int, size: int = 64) -> dict[str, torch.Tensor]:
    return {"sample": torch.zeros(1, channels, size, size, device="meta"),
            "timestep": torch.zeros(1, dtype=torch.long, device="meta"),
            "encoder_hidden_states": torch.zeros(1, 77, 768, device="meta")}


def test_bk_sdm_params_exact_on_sd15() -> None:
    """BK-SDM-Base/Small/Tiny over SD-1.5 (built on the meta device): the shipped teachers' exact param counts."""
    space = search_spaces.load("sd15_bk")
    unet = unet_skeleton("sd15")
    units = {u.path: u for u in unit_infos(build_unit_graph(unet, _meta_inputs(4)))}
    expected = {"base": 579_384_964, "small": 482_346_884, "tiny": 323_384_964}
    for variant in VARIANTS:
        arch = bk_sdm_arch(space, variant)
        choices = {p: UnitChoice(c.op, c.kwargs, units[p]) for p, c in space.unit_choices(arch).items()}
        compact = CompactUNet.build(unet, choices)
        assert count_params(compact) == count_params(unet_skeleton(f"bk-sdm-{variant}")) == expected[variant]
        assert compact(**_meta_inputs(4)).sample.shape == (1, 4, 64, 64)


@pytest.mark.slow
def test_bk_sdm_gmacs_on_sd15() -> None:
    """Cost-table GMACs of the BK archs within 0.1% of whole-model counts of the shipped BK-SDM teachers."""
    space = search_spaces.load("sd15_bk")
    teacher = load_teacher("sd15")
    table = build_cost_table(teacher, space, ptflops=False, progress=False)
    costs = {v: table.cost(bk_sdm_arch(space, v)) for v in VARIANTS}
    del teacher
    gc.collect()
    from tocsr_nas.profiling.cost_table import model_cost, model_inputs  # noqa: PLC0415

    for variant, cost in costs.items():
        bk = load_teacher(f"bk-sdm-{variant}")
        measured = model_cost(bk.unet, model_inputs(bk, table.latent_size))
        assert cost.params == measured.params
        assert abs(cost.macs - measured.macs) / measured.macs < 1e-3
        del bk
        gc.collect()
