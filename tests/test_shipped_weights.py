"""The trained weights shipped for the embedded default teacher ``tiny-ldm``."""
from __future__ import annotations

import shutil

import pytest
import torch
import yaml

from tocsr_nas.cli import main
from tocsr_nas.data import builtin_image_files, load_image
from tocsr_nas.errors import ConfigError
from tocsr_nas.teachers import CONFIG_DIR, load_teacher
from tocsr_nas.teachers.weights import load_scheduler, untrained_teacher, weights_folder
from tocsr_nas.training.evaluate import denoising_loss, psnr, reconstruct
from tocsr_nas.training.sampling import image_grid, sample_images
from tocsr_nas.training.teacher_recipe import held_out_latents, held_out_zero_baseline

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def teacher():
    return load_teacher("tiny-ldm")


@pytest.fixture(scope="module")
def folder():
    path = weights_folder("tiny-ldm")
    assert path is not None and path.is_dir()
    return path


@pytest.fixture(scope="module")
def latents(teacher):
    return held_out_latents(teacher.vae, "builtin", crop_size=128, count=16)


def test_shipped_weights_are_small_fp16_and_documented(folder):
    total = sum(p.stat().st_size for p in folder.iterdir())
    assert total <= 25 * 2**20
    assert (folder / "MODEL_CARD.md").is_file()


def test_load_teacher_returns_trained_unet_context_and_vae(teacher):
    assert teacher.vae is not None
    assert teacher.vae.config.latent_channels == teacher.latent_channels == 16
    assert 2 ** (len(teacher.vae.config.block_out_channels) - 1) == 4
    assert sum(p.numel() for p in teacher.vae.parameters()) < 3.5e6
    assert float(teacher.context.tokens.abs().sum()) > 0  # trained, not the zero init
    assert teacher.unet.dtype == torch.float32


def test_held_out_denoising_loss_beats_random_init_and_predict_zero(teacher, folder, latents):
    scheduler = load_scheduler(folder)
    trained = denoising_loss(teacher, latents, scheduler, seed=0)
    random_init = denoising_loss(untrained_teacher("tiny-ldm", seed=0), latents, scheduler, seed=0)
    zero = held_out_zero_baseline(latents, scheduler, seed=0)
    assert zero == pytest.approx(1.0, abs=0.05)
    assert trained < 0.5 * random_init
    assert trained < 0.8 * zero


def test_vae_reconstructs_a_held_out_photograph(teacher):
    image = load_image(builtin_image_files()[0])[:, :192, :192]  # astronaut: not in the training folder
    assert psnr(image, reconstruct(teacher.vae, image)) > 36.0  # measured 38.5 dB with the shipped fp16 weights


def test_sampling_draws_images(teacher, folder):
    images = sample_images(teacher, load_scheduler(folder), 2, steps=3, seed=0)
    assert images.shape == (2, 3, 128, 128) and 0 <= float(images.min()) and float(images.max()) <= 1
    assert image_grid(images).size == (2 * 128 + 3 * 2, 128 + 2 * 2)


@pytest.mark.parametrize("name", ["vae.safetensors", "unet.safetensors"])
def test_corrupted_or_missing_file_is_a_one_line_error(tmp_path, folder, name):
    copy = tmp_path / "weights"
    shutil.copytree(folder, copy)
    config = yaml.safe_load((CONFIG_DIR / "tiny-ldm.yaml").read_text())
    config["weights"] = "weights"
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 2] ^= 0x10
    (copy / name).write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=rf"{name}: weights file corrupted") as err:
        load_teacher(tmp_path / "tiny.yaml")
    assert "\n" not in str(err.value)
    (copy / name).unlink()
    with pytest.raises(ConfigError, match=rf"{name}: weights file not found"):
        load_teacher(tmp_path / "tiny.yaml")


def test_sample_cli_needs_a_teacher_with_weights(tmp_path, capsys):
    assert main(["sample", "--teacher", "sd15", "-n", "1", "-o", str(tmp_path / "grid.png")]) == 2
    assert "no trained weights" in capsys.readouterr().err
