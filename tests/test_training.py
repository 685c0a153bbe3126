"""Smoke runs of both training recipes, checkpoint integrity and resume after a simulated kill."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from tocsr_nas.cli import main
from tocsr_nas.config_io import validate
from tocsr_nas.errors import ConfigError
from tocsr_nas.teachers.weights import (
    UNET_FILE,
    load_teacher_weights,
    save_teacher_weights,
    untrained_teacher,
    verify_weights,
)
from tocsr_nas.training.checkpoint import (
    MODEL_FILE,
    Checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from tocsr_nas.training.teacher_recipe import SchedulerConfig, TeacherRecipe, run_teacher_recipe
from tocsr_nas.training.vae_recipe import VaeRecipe, run_vae_recipe
from tocsr_nas.vae import build_vae, load_vae

TINY_VAE = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 16,
    "down_block_types": ["DownEncoderBlock2D"] * 3, "up_block_types": ["UpDecoderBlock2D"] * 3,
    "block_out_channels": [8, 8, 16], "layers_per_block": 1, "norm_num_groups": 4,
    "mid_block_add_attention": False, "output_norm": False, "sample_size": 32,
}
TINY_TEACHER = {
    "latent_size": 8, "context": {"kind": "learned", "length": 2},
    "unet": {"sample_size": 8, "in_channels": 16, "out_channels": 16, "block_out_channels": [16, 32],
             "layers_per_block": 1, "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
             "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": 16,
             "attention_head_dim": 2, "norm_num_groups": 8},
}


def _loop(steps: int, **extra) -> dict:
    return {"steps": steps, "batch_size": 2, "lr": 1e-3, "warmup_steps": 1, "checkpoint_every": 2,
            "log_every": 1, "num_threads": 1, **extra}


@pytest.fixture
def image_dir(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(2):
        Image.fromarray(rng.integers(0, 256, (48, 56, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    return folder


def _vae_recipe(image_dir, steps: int, **loop) -> VaeRecipe:
    return validate(VaeRecipe, {"data": {"source": str(image_dir), "crop_size": 32}, "loop": _loop(steps, **loop),
                                "vae": TINY_VAE, "scaling_crops": 4})


def test_vae_recipe_smoke(image_dir, tmp_path):
    vae, result = run_vae_recipe(_vae_recipe(image_dir, 4), tmp_path / "run")
    assert result.step == 4 and result.resumed_from == 0 and len(result.history) == 4
    assert all(np.isfinite(entry["loss"]) for entry in result.history)
    loaded = load_vae(tmp_path / "run" / "vae")
    assert 0 < float(loaded.config.scaling_factor) < 1e4
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), vae.state_dict().values()))
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")] == ["step-00000002", "step-00000004"]
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 4


def test_resume_after_kill_matches_an_uninterrupted_run(image_dir, tmp_path):
    recipe = _vae_recipe(image_dir, 6, ema_decay=0.9)
    _, killed = run_vae_recipe(recipe, tmp_path / "killed", stop_after=3)  # checkpoint at step 2 only
    assert killed.step == 3
    (tmp_path / "killed" / "checkpoints" / "step-00000003").rename(tmp_path / "killed" / "checkpoints" / ".tmp-x")
    resumed_vae, resumed = run_vae_recipe(recipe, tmp_path / "killed")
    assert resumed.resumed_from == 2 and resumed.step == 6
    straight_vae, _ = run_vae_recipe(recipe, tmp_path / "straight")
    for a, b in zip(resumed_vae.state_dict().values(), straight_vae.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_vae_output_norm_option():
    vae = build_vae(TINY_VAE)
    assert isinstance(vae.decoder.conv_norm_out, torch.nn.Identity) and vae.config.output_norm is False
    assert isinstance(build_vae({**TINY_VAE, "output_norm": True}).encoder.conv_norm_out, torch.nn.GroupNorm)
    with pytest.raises(ConfigError, match="vae.output_norm: must be true or false"):
        build_vae({**TINY_VAE, "output_norm": "no"}, source="x.yaml")
    with pytest.raises(ConfigError, match="x.yaml: vae: invalid VAE config"):
        build_vae({**TINY_VAE, "colour": 1}, source="x.yaml")


def test_corrupted_checkpoint_is_detected_not_loaded(tmp_path, caplog):
    def checkpoint(step: int) -> Checkpoint:
        return Checkpoint(step=step, model={"w": torch.full((4,), float(step))}, optimizer={"state": {}, "param_groups": []})

    root = tmp_path / "checkpoints"
    save_checkpoint(root, checkpoint(1))
    newest = save_checkpoint(root, checkpoint(2))
    data = bytearray((newest / MODEL_FILE).read_bytes())
    data[-1] ^= 0xFF
    (newest / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"model.safetensors: checkpoint file corrupted"):
        load_checkpoint(newest)
    fallback = latest_checkpoint(root)
    assert fallback is not None and fallback.step == 1 and "corrupted" in caplog.text
    (newest / "state.json").write_text("{not json")
    with pytest.raises(ConfigError, match="state.json: unreadable checkpoint state"):
        load_checkpoint(newest)


def test_teacher_recipe_smoke_and_weights_roundtrip(image_dir, tmp_path):
    run_vae_recipe(_vae_recipe(image_dir, 2), tmp_path / "vae")
    teacher_config = tmp_path / "tiny.yaml"
    teacher_config.write_text(yaml.safe_dump(TINY_TEACHER))
    recipe = validate(TeacherRecipe, {
        "teacher": str(teacher_config), "vae": str(tmp_path / "vae" / "vae"),
        "data": {"source": str(image_dir), "crop_size": 32}, "loop": _loop(3, ema_decay=0.9),
        "held_out_source": str(image_dir), "held_out_crops": 4})
    summary = run_teacher_recipe(recipe, tmp_path / "teacher")
    assert summary["steps"] == 3 and np.isfinite(summary["final"]["loss"])
    held_out = summary["held_out"]
    assert held_out["predict_zero"] == pytest.approx(1.0, abs=0.1)
    weights = tmp_path / "teacher" / "weights"
    manifest = verify_weights(weights)
    assert manifest["steps"] == 3
    teacher = untrained_teacher(teacher_config, seed=1)
    load_teacher_weights(teacher, weights)
    assert teacher.vae is not None and teacher.vae.config.latent_channels == 16
    data = bytearray((weights / UNET_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01
    (weights / UNET_FILE).write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"unet.safetensors: weights file corrupted"):
        load_teacher_weights(untrained_teacher(teacher_config), weights)
    (weights / UNET_FILE).unlink()
    with pytest.raises(ConfigError, match=r"unet.safetensors: weights file not found"):
        load_teacher_weights(untrained_teacher(teacher_config), weights)


def test_saved_weights_are_fp16_and_listed(tmp_path):
    teacher_config = tmp_path / "tiny.yaml"
    teacher_config.write_text(yaml.safe_dump(TINY_TEACHER))
    teacher = untrained_teacher(teacher_config)
    folder = save_teacher_weights(tmp_path / "w", teacher.unet, teacher.context, build_vae(TINY_VAE),
                                  SchedulerConfig().build())
    assert {t.dtype for t in load_file(str(folder / UNET_FILE)).values()} == {torch.float16}
    assert set(json.loads((folder / "manifest.json").read_text())["files"]) >= {UNET_FILE, "vae.safetensors"}


def test_cli_bad_recipe_is_a_one_line_error(tmp_path, capsys):
    recipe = tmp_path / "vae.yaml"
    recipe.write_text(yaml.safe_dump({"loop": _loop(2), "vae": TINY_VAE, "colour": 1}))
    assert main(["train", "vae", "--config", str(recipe), "--out", str(tmp_path / "run")]) == 2
    assert "vae.yaml: colour: unknown key" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    recipe.write_text(yaml.safe_dump({"loop": _loop(2), "vae": TINY_VAE}))
    assert main(["train", "vae", "--config", str(recipe), "--hr-dir", str(tmp_path / "empty"),
                 "--out", str(tmp_path / "run")]) == 2
    assert "empty: no image files in folder" in capsys.readouterr().err
