"""A compact UNet is a diffusers UNet: it lives inside a ``StableDiffusionPipeline`` (save/load with ``unet/``)
without warnings, and folders in the earlier compact format still load."""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from safetensors.torch import save_file

from tocsr_nas.compact import CompactUNet
from tocsr_nas.supernet import Supernet

transformers = pytest.importorskip("transformers", reason="the pipeline test needs transformers "
                                                           "(pip install 'tocsr-nas[pipelines]')")

CHARS = "abcdefghijklmnopqrstuvwxyz"


def tiny_tokenizer(folder: Path):
    """A CLIP BPE tokenizer over single letters, written as vocab.json + merges.txt."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in CHARS:
        vocab[char] = len(vocab)
        vocab[f"{char}</w>"] = len(vocab)
    folder.mkdir()
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=8)


def tiny_pipeline(compact: CompactUNet, tmp_path: Path):
    from diffusers import StableDiffusionPipeline

    tokenizer = tiny_tokenizer(tmp_path / "tokenizer")
    torch.manual_seed(0)
    text_encoder = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=8, projection_dim=32, bos_token_id=0, eos_token_id=1, pad_token_id=1)).eval()
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=compact.config.in_channels,
                        block_out_channels=[8, 8], down_block_types=["DownEncoderBlock2D"] * 2,
                        up_block_types=["UpDecoderBlock2D"] * 2, norm_num_groups=4, sample_size=32).eval()
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=compact,
                                   scheduler=DDIMScheduler(num_train_timesteps=1000), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def generate(pipe) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    return pipe("a cat", height=32, width=32, num_inference_steps=2, guidance_scale=2.0, output_type="np",
                generator=torch.Generator().manual_seed(0)).images


def test_stable_diffusion_pipeline_round_trip(micro_teacher, micro_space, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    from diffusers import StableDiffusionPipeline

    compact = Supernet(micro_teacher, micro_space).extract(micro_space.sample(np.random.default_rng(3)))
    assert isinstance(compact, UNet2DConditionModel)
    pipe = tiny_pipeline(compact, tmp_path)
    before = generate(pipe)
    assert before.shape == (1, 32, 32, 3) and np.isfinite(before).all()
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipe.save_pretrained(tmp_path / "pipe")
        loaded = StableDiffusionPipeline.from_pretrained(tmp_path / "pipe")
    # everything is silent except transformers' notice that torchvision (not a dependency) is missing
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "torchvision" not in r.getMessage()]
    assert not warned, warned
    assert json.loads((tmp_path / "pipe" / "model_index.json").read_text())["unet"] == ["tocsr_nas.compact",
                                                                                        "CompactUNet"]
    assert type(loaded.unet) is CompactUNet and loaded.unet.choices == compact.choices
    assert loaded.unet.meta == compact.meta
    np.testing.assert_array_equal(generate(loaded), before)


@torch.no_grad()
def test_folders_in_the_earlier_compact_format_still_load(micro_teacher, micro_space, tmp_path: Path) -> None:
    compact = Supernet(micro_teacher, micro_space).extract(micro_space.sample(np.random.default_rng(4)))
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "compact_unet.json").write_text(json.dumps({
        "format": "tocsr-nas/compact-unet", "version": 1, "unet_config": compact.unet_config,
        "choices": {p: c.to_json() for p, c in compact.choices.items()}, "meta": compact.meta}))
    save_file({k: v.contiguous() for k, v in compact.state_dict().items()}, str(legacy / "model.safetensors"))
    loaded = CompactUNet.from_pretrained(legacy)
    inputs = micro_teacher.example_inputs()
    assert torch.equal(loaded(**inputs).sample, compact.eval()(**inputs).sample)
