"""Latent expansion 4 -> 16 channels: the widened UNet and the expanded VAE start equal to the old ones."""
from __future__ import annotations

import copy

import pytest
import torch

from tocsr_nas.errors import ConfigError
from tocsr_nas.expansion import expand_vae, widen_unet
from tocsr_nas.teachers import load_teacher
from tocsr_nas.vae import build_vae

from .conftest import DATA

VAE = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "block_out_channels": [8, 16],
       "down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2,
       "layers_per_block": 1, "norm_num_groups": 4}


@pytest.fixture(scope="module")
def vae4():
    torch.manual_seed(0)
    vae = build_vae(VAE).eval()
    with torch.no_grad():  # non-trivial 1x1 latent convs, so the block placement is tested
        for conv in (vae.quant_conv, vae.post_quant_conv):
            conv.weight.normal_(generator=torch.Generator().manual_seed(1))
            conv.bias.normal_(generator=torch.Generator().manual_seed(2))
    return vae


def test_widened_unet_reproduces_the_old_one_on_the_old_subspace() -> None:
    teacher = load_teacher(DATA / "micro-bk.yaml", seed=0)  # a 4-channel micro UNet
    old = teacher.unet
    wide = widen_unet(copy.deepcopy(old), 16)
    assert wide.config.in_channels == wide.config.out_channels == 16
    inputs = teacher.example_inputs(batch_size=2)
    extra = torch.randn(2, 12, *inputs["sample"].shape[2:], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = old(**inputs).sample
        out = wide(**{**inputs, "sample": torch.cat([inputs["sample"], extra], 1)}).sample
    assert torch.allclose(out[:, :4], expected, atol=1e-6, rtol=0)
    assert torch.equal(out[:, 4:], torch.zeros_like(out[:, 4:]))
    with pytest.raises(ConfigError, match="already has 16"):
        widen_unet(wide, 16)


def test_expanded_vae_encodes_and_decodes_as_the_old_one(vae4) -> None:
    vae16 = expand_vae(vae4, 16)
    assert vae16.config.latent_channels == 16
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        old, new = vae4.encode(images).latent_dist, vae16.encode(images).latent_dist
        assert torch.allclose(new.mean[:, :4], old.mean, atol=1e-6)
        assert torch.allclose(new.logvar[:, :4], old.logvar, atol=1e-6)
        assert new.mean[:, 4:].abs().mean() > 0  # the extra channels carry (random) image features
        z = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(1))
        assert torch.allclose(vae16.decode(z).sample, vae4.decode(z[:, :4]).sample, atol=1e-6)
    with pytest.raises(ConfigError, match="already has a 16-channel latent"):
        expand_vae(vae16, 16)


def test_expanded_vae_extra_channels_get_gradients(vae4) -> None:
    """At init the decoder ignores the extra channels, but training reaches them."""
    vae16 = expand_vae(vae4, 16).train()
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    recon = vae16.decode(vae16.encode(images).latent_dist.mean).sample
    (recon - images).square().mean().backward()
    assert vae16.decoder.conv_in.weight.grad[:, 4:].abs().sum() > 0
