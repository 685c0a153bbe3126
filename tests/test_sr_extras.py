"""SR extras (tiny models): fp16 model folders with a light VAE, comparison crops, shipped-model names."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import skimage.data
import torch
from diffusers import DDPMScheduler
from PIL import Image

from tocsr_nas.cli import main
from tocsr_nas.errors import ConfigError
from tocsr_nas.sr.adapt import adapt_unet
from tocsr_nas.sr.crops import GAP, LABEL_HEIGHT, compare_strip, detail_window
from tocsr_nas.sr.light_vae import LightConfig, LightVAE, LightVAERecipe, run_light_vae
from tocsr_nas.sr.model import SRModel, load_sr_model, save_sr_model
from tocsr_nas.sr.pipeline import upscale_image
from tocsr_nas.sr.shipped import DEFAULT_SR_MODEL, resolve_sr_model, shipped_sr_models
from tocsr_nas.vae import build_vae, save_vae

from .test_sr import MICRO_VAE


@pytest.fixture(scope="module")
def micro_model(micro_teacher) -> SRModel:
    torch.manual_seed(0)
    vae = build_vae(MICRO_VAE).eval()
    net = adapt_unet(micro_teacher.unet, micro_teacher.context(1)[0].detach()).eval()
    light = LightVAE(LightConfig(latent_channels=16, factor=4, channels=8, depth=1)).eval()
    return SRModel(net=net, vae=vae, scheduler=DDPMScheduler(), kind="sr-onestep", scale=4, timestep=200,
                   output="residual", light=light)


def _photo(size: int) -> torch.Tensor:
    image = skimage.data.coffee()[100:100 + size, 200:200 + size].astype(np.float32) / 255
    return torch.from_numpy(image).permute(2, 0, 1).contiguous()


def test_fp16_folder_with_light_vae_round_trips_and_runs_both_paths(micro_model, tmp_path):
    folder = save_sr_model(micro_model, tmp_path / "m", dtype=torch.float16)
    config = json.loads((folder / "sr_model.json").read_text())
    assert config["light"]["folder"] == "light"
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    loaded = load_sr_model(folder)
    assert loaded.light is not None and next(loaded.net.parameters()).dtype == torch.float32
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = micro_model.light.decoder[0].weight.half().float()
        assert torch.equal(loaded.light.decoder[0].weight, expected)
        assert loaded.light.encode(x).shape == (1, 16, 8, 8) and loaded.light.decode(loaded.light.encode(x)).shape == x.shape
    lr = _photo(16)
    full, light = upscale_image(loaded, lr), upscale_image(loaded, lr, light=True)
    assert full.shape == light.shape == (3, 64, 64) and not torch.equal(full, light)
    (folder / "light" / "light.safetensors").write_bytes(b"0" * 10)
    with pytest.raises(ConfigError, match="light VAE weights corrupted"):
        load_sr_model(folder)
    no_light = save_sr_model(dataclasses.replace(micro_model, light=None), tmp_path / "n")
    with pytest.raises(ConfigError, match="no light VAE"):
        upscale_image(load_sr_model(no_light), lr, light=True)


def test_light_vae_recipe_trains_and_exports(tmp_path):
    torch.manual_seed(0)
    save_vae(build_vae(MICRO_VAE), tmp_path / "vae")
    recipe = LightVAERecipe.model_validate({
        "vae": str(tmp_path / "vae"), "light": {"channels": 8, "depth": 0, "factor": 4},
        "data": {"source": "builtin", "crop_size": 16},
        "loop": {"steps": 2, "batch_size": 2, "lr": 1e-3, "warmup_steps": 0, "checkpoint_every": 1, "log_every": 1,
                 "num_threads": 1}})
    summary = run_light_vae(recipe, tmp_path / "run")
    assert summary["steps"] == 2 and {"encoder_l1", "decoder_l1"} <= set(summary["final"])
    assert (tmp_path / "run" / "light" / "light.safetensors").is_file()
    with pytest.raises(ConfigError, match="factor"):
        run_light_vae(recipe.model_copy(update={"light": LightConfig(factor=8)}), tmp_path / "bad")


def test_compare_strip_panels_and_detail_window():
    hr = torch.zeros(3, 64, 96)
    hr[:, 32:, 64:] = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))  # the only detail
    assert detail_window(hr, 32, 4) == (32, 64)
    lr = hr[:, ::4, ::4]
    strip = compare_strip(lr, hr, {"bicubic": hr, "model": hr}, 4, size=32)
    assert strip.size == (4 * 32 + 3 * GAP, 32 + LABEL_HEIGHT) and strip.mode == "RGB"
    panel = np.asarray(strip)[LABEL_HEIGHT:, 32 + GAP:64 + GAP]  # the bicubic panel shows the HR window
    assert np.array_equal(panel, (hr[:, 32:, 64:].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def test_evaluate_sr_writes_compare_crops(micro_model, tmp_path):
    model_dir = save_sr_model(micro_model, tmp_path / "model")
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a", "b", "c"):
        Image.fromarray((_photo(48) * 255).round().byte().permute(1, 2, 0).numpy()).save(data / f"{name}.png")
    out = tmp_path / "eval"
    argv = ["evaluate-sr", "--model", f"one={model_dir}", "--data", str(data), "--out", str(out), "--no-latency",
            "--compare-crops", "2", "--crop-size", "40"]
    assert main(argv) == 0
    crops = sorted(p.name for p in (out / "crops").iterdir())
    assert crops == ["data-a.png", "data-b.png"]
    with Image.open(out / "crops" / "data-a.png") as image:  # LR nearest, bicubic, one, HR
        assert image.size == (4 * 40 + 3 * GAP, 40 + LABEL_HEIGHT)
    summary = (out / "summary.md").read_text()
    assert "![data-a.png](crops/data-a.png)" in summary and "Side-by-side crops" in summary
    assert main(argv) == 2  # crops/ from the earlier run is an output too: --overwrite needed


def test_model_specs_resolve_paths_and_shipped_names(tmp_path):
    assert resolve_sr_model(tmp_path) == tmp_path
    assert resolve_sr_model(str(tmp_path / "nothere")) == tmp_path / "nothere"  # a path: checked by the caller
    with pytest.raises(ConfigError, match="no SR model folder or shipped"):
        resolve_sr_model("x9-nothere")
    assert DEFAULT_SR_MODEL in shipped_sr_models()
    assert resolve_sr_model(None).name == DEFAULT_SR_MODEL
