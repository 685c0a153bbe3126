"""Supernet and extraction: the properties the rest of the toolkit relies on, on a real (micro) diffusers UNet."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

import search_spaces
from tocsr_nas.compact import CompactUNet
from tocsr_nas.errors import ConfigError
from tocsr_nas.ops import ResnetOp, register_op, registry
from tocsr_nas.supernet import Supernet

from .conftest import write_space


@pytest.fixture(scope="module")
def supernet(micro_teacher, micro_space):
    return Supernet(micro_teacher, micro_space)


@pytest.fixture(scope="module")
def inputs(micro_teacher):
    return micro_teacher.example_inputs(batch_size=2, seed=1)


@torch.no_grad()
def test_teacher_arch_is_the_teacher_exactly(supernet, micro_teacher, micro_space, inputs):
    supernet.activate(micro_space.teacher_arch())
    assert torch.equal(supernet(**inputs).sample, micro_teacher.unet(**inputs).sample)
    compact = supernet.extract(micro_space.teacher_arch())
    theirs, ours = micro_teacher.unet.state_dict(), compact.state_dict()
    assert list(theirs) == list(ours)
    assert all(torch.equal(theirs[k], ours[k]) for k in theirs)


@torch.no_grad()
def test_extracted_equals_supernet_path(supernet, micro_space, inputs):
    rng = np.random.default_rng(0)
    for _ in range(4):
        arch = micro_space.sample(rng)
        supernet.activate(arch)
        expected = supernet(**inputs).sample
        compact = supernet.extract(arch)
        assert torch.equal(compact(**inputs).sample, expected), str(arch)
        assert compact.meta["arch"] == str(arch)


def test_extracted_model_is_independent(supernet, micro_space):
    arch = micro_space.arch({"down:R": "slim(width=0.5)"})
    compact = supernet.extract(arch)
    with torch.no_grad():
        for p in compact.parameters():
            p.add_(1.0)
    original = supernet.candidate_module("down_blocks.0.resnets.0", "slim(width=0.5)")
    copied = compact.get_submodule("down_blocks.0.resnets.0")
    assert not any(torch.equal(a, b) for a, b in zip(original.parameters(), copied.parameters()))


@torch.no_grad()
def test_save_load_roundtrip(supernet, micro_space, inputs, tmp_path):
    arch = micro_space.sample(np.random.default_rng(5))
    compact = supernet.extract(arch)
    folder = compact.save_pretrained(tmp_path / "compact")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    loaded = CompactUNet.from_pretrained(folder)
    assert torch.equal(loaded(**inputs).sample, compact(**inputs).sample)
    assert loaded.meta == compact.meta


@torch.no_grad()
def test_compact_unet_in_a_ddim_loop(supernet, micro_space, micro_teacher):
    compact = supernet.extract(micro_space.arch({"down:A": "lin", "up:R": "dws(expansion=2,kernel=3)"}))
    scheduler = DDIMScheduler(num_train_timesteps=1000)
    scheduler.set_timesteps(5)
    latents = torch.randn(1, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    context = micro_teacher.context(1)
    for t in scheduler.timesteps:
        noise = compact(latents, t, encoder_hidden_states=context).sample
        latents = scheduler.step(noise, t, latents).prev_sample
    assert latents.shape == (1, 16, 16, 16) and torch.isfinite(latents).all()


def test_load_refuses_other_folders(tmp_path):
    with pytest.raises(ConfigError, match="not a compact UNet folder"):
        CompactUNet.from_pretrained(tmp_path)
    (tmp_path / "compact_unet.json").write_text('{"format": "something-else"}')
    with pytest.raises(ConfigError, match="unknown format"):
        CompactUNet.from_pretrained(tmp_path)


def _wrong_channels(unit, teacher):
    class WrongChannels(ResnetOp):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(unit.in_channels, unit.out_channels + 1, 1)

        def block(self, hidden_states, temb):
            return self.conv(hidden_states)

    return WrongChannels()


def test_candidate_with_wrong_output_shape_is_refused(micro_teacher, tmp_path):
    with registry.OPS.scoped():  # registered for this test only
        register_op("test_wrong_channels", kinds={"resnet"})(_wrong_channels)
        path = write_space(tmp_path, """
name: wrong
teacher: {teacher}
candidates: {resnet: [teacher, test_wrong_channels]}
stages: [{name: mid, units: ["mid_block.*"]}]
""")
        space = search_spaces.load(path)
        with pytest.raises(ConfigError, match=r"mid:R: candidate 'test_wrong_channels' returns shape \(65, 4, 4\), "
                                              r"unit mid_block.resnets.0 needs \(64, 4, 4\)"):
            Supernet(micro_teacher, space)
