"""Teacher zoo: named configs, config files, local folders, context providers, and errors."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from tocsr_nas.errors import ConfigError
from tocsr_nas.teachers import EmbeddingContext, available_teachers, load_teacher, unet_skeleton

from .conftest import MICRO_TEACHER


def test_named_teachers_are_listed():
    assert {"tiny-ldm", "sd15", "sd15-16ch", "bk-sdm-base", "bk-sdm-small", "bk-sdm-tiny"} <= set(available_teachers())


def test_tiny_ldm_is_sd_like_on_a_16_channel_latent():
    unet = unet_skeleton("tiny-ldm")
    assert unet.config.in_channels == unet.config.out_channels == 16
    assert len(unet.config.block_out_channels) >= 3
    assert unet.config.layers_per_block == 2
    assert unet.config.down_block_types[0] == "CrossAttnDownBlock2D"


@pytest.mark.parametrize(("name", "millions"), [("sd15", 859.52), ("bk-sdm-base", 579.38), ("bk-sdm-small", 482.35),
                                                  ("bk-sdm-tiny", 323.38)])
def test_sd_family_parameter_counts(name, millions):
    unet = unet_skeleton(name)  # meta device: structure without memory
    assert sum(p.numel() for p in unet.parameters()) / 1e6 == pytest.approx(millions, abs=0.01)


def test_config_file_and_seeded_init(micro_teacher):
    again = load_teacher(MICRO_TEACHER, seed=0)
    for (name, a), (_, b) in zip(micro_teacher.unet.state_dict().items(), again.unet.state_dict().items()):
        assert torch.equal(a, b), name
    inputs = micro_teacher.example_inputs(batch_size=2)
    assert inputs["sample"].shape == (2, 16, 16, 16)
    assert inputs["encoder_hidden_states"].shape == (2, 4, 32)
    out = micro_teacher.unet(**inputs).sample
    assert out.shape == inputs["sample"].shape


def test_from_pretrained_folder_roundtrip(micro_teacher, tmp_path):
    micro_teacher.unet.save_pretrained(tmp_path / "unet")
    loaded = load_teacher(tmp_path)
    inputs = micro_teacher.example_inputs()
    with torch.no_grad():
        assert torch.equal(loaded.unet(**inputs).sample, micro_teacher.unet(**inputs).sample)


def test_embedding_context(tmp_path):
    path = tmp_path / "ctx.safetensors"
    save_file({"encoder_hidden_states": torch.randn(3, 5, 8)}, str(path))
    context = EmbeddingContext(path)
    assert context(2).shape == (2, 5, 8)
    drawn = context(4, torch.Generator().manual_seed(1))
    assert torch.equal(drawn, context(4, torch.Generator().manual_seed(1)))


@pytest.mark.parametrize(("spec", "message"), [
    ("no-such-teacher", "unknown teacher 'no-such-teacher' (allowed: "),
    ("missing/folder", "teacher folder or config file not found"),
])
def test_bad_teacher_specs(spec, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_teacher(spec)


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="not a diffusers UNet folder"):
        load_teacher(tmp_path)


def test_bad_unet_argument(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("latent_size: 8\nunet: {in_channels: 4, not_an_arg: 1}\n")
    with pytest.raises(ConfigError, match=r"t.yaml: unet: invalid UNet argument"):
        load_teacher(path)
