"""Latent expansion 4 -> 16 channels: the widened UNet and the expanded VAE start equal to the old ones."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import yaml
from diffusers import DDPMScheduler
from PIL import Image

from tocsr_nas.data.images import builtin_image_files
from tocsr_nas.errors import ConfigError
from tocsr_nas.expansion import expand_vae, leading_channels_only, widen_unet
from tocsr_nas.experiments import resolve
from tocsr_nas.teachers import load_teacher
from tocsr_nas.teachers.weights import save_teacher_weights
from tocsr_nas.training.evaluate import reconstruct
from tocsr_nas.training.expand_recipe import ExpandRecipe, ExpandVaeLoss, ExpandVaeTask, run_expand_recipe
from tocsr_nas.training.expansion_study import linear_denoiser_loss, markdown, run_study
from tocsr_nas.vae import build_vae

from .badinput import assert_refused
from .conftest import DATA

EXPANSION = Path(__file__).resolve().parents[1] / "experiments" / "expansion.yaml"

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
    assert out[:, 4:].abs().mean() > 0  # the new outputs read the features (no zero-zero saddle on the new path)
    assert torch.equal(widen_unet(copy.deepcopy(old), 16).conv_out.weight, wide.conv_out.weight)  # seeded
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
        assert torch.allclose(new.logvar[:, 4:], old.logvar.repeat(1, 3, 1, 1), atol=1e-6)  # the old noise level
        assert new.mean[:, 4:].abs().mean() > 0  # the extra channels carry (random) image features
        z = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(1))
        assert torch.allclose(vae16.decode(z).sample, vae4.decode(z[:, :4]).sample, atol=1e-6)
    with pytest.raises(ConfigError, match="already has a 16-channel latent"):
        expand_vae(vae16, 16)


def test_leading_channels_only_zeroes_the_extra_posterior_means(vae4) -> None:
    """The copy encodes the first channels as the VAE does and zero on the rest; the VAE itself is untouched."""
    vae16 = expand_vae(vae4, 16)
    with torch.no_grad():  # the decoder reads the extra channels, as after training
        vae16.decoder.conv_in.weight[:, 4:].normal_(generator=torch.Generator().manual_seed(4))
    before = {k: v.clone() for k, v in vae16.state_dict().items()}
    restricted = leading_channels_only(vae16, 4)
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        full, kept = vae16.encode(images).latent_dist, restricted.encode(images).latent_dist
        assert torch.equal(kept.mean[:, :4], full.mean[:, :4]) and not kept.mean[:, 4:].any()
        assert full.mean[:, 4:].abs().mean() > 0
    image = images[0] / 2 + 0.5
    assert not torch.allclose(reconstruct(restricted, image), reconstruct(vae16, image))
    assert all(torch.equal(before[k], v) for k, v in vae16.state_dict().items())
    with pytest.raises(ValueError, match="between 1 and 15, not 16"):
        leading_channels_only(vae16, 16)


def test_expanded_vae_extra_channels_get_gradients(vae4) -> None:
    """At init the decoder ignores the extra channels, but training reaches them."""
    vae16 = expand_vae(vae4, 16).train()
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    recon = vae16.decode(vae16.encode(images).latent_dist.mean).sample
    (recon - images).square().mean().backward()
    assert vae16.decoder.conv_in.weight.grad[:, 4:].abs().sum() > 0


def _recipe(teacher: str, steps: int = 2) -> dict:
    loop = {"steps": steps, "batch_size": 2, "lr": 1e-3, "checkpoint_every": 1, "log_every": 1, "num_threads": 1}
    return {"recipe": "expand", "teacher": teacher, "channels": 16, "data": {"source": "builtin", "crop_size": 32},
            "vae_loop": loop, "unet_loop": loop, "held_out_crops": 1}


@pytest.fixture(scope="module")
def source4(tmp_path_factory: pytest.TempPathFactory, vae4) -> Path:
    """A 4-channel teacher config with weights (micro UNet, tiny VAE, learned context; random init)."""
    root = tmp_path_factory.mktemp("source4")
    teacher = load_teacher(DATA / "micro-bk.yaml", seed=0)
    save_teacher_weights(root / "weights", teacher.unet, teacher.context, vae4, DDPMScheduler(), dtype=torch.float32)
    config = yaml.safe_load((DATA / "micro-bk.yaml").read_text())
    (root / "src4.yaml").write_text(yaml.safe_dump({**config, "weights": "weights"}))
    return root / "src4.yaml"


def test_expand_resumes_as_if_uninterrupted_and_writes_a_teacher_folder(tmp_path: Path, source4: Path) -> None:
    recipe = ExpandRecipe(**_recipe(str(source4)))
    out = tmp_path / "expanded"
    first = run_expand_recipe(recipe, out, stop_after=1)
    assert first["vae"]["steps"] == 1 and "unet" not in first and not (out / "teacher.yaml").exists()
    summary = run_expand_recipe(recipe, out)
    assert summary["vae"]["resumed_from"] == 1 and summary["unet"]["steps"] == 2
    expanded = load_teacher(out)
    assert expanded.latent_channels == 16 and expanded.vae.config.latent_channels == 16
    manifest = json.loads((out / "weights" / "manifest.json").read_text())
    assert manifest["source"] == str(source4) and manifest["recipe"]["channels"] == 16
    assert set(summary["held_out"]) >= {"old_teacher", "expanded_teacher"}
    with torch.no_grad():
        assert expanded.unet(**expanded.example_inputs()).sample.shape == (1, 16, 16, 16)
    straight = load_teacher(run_expand_recipe(recipe, tmp_path / "uninterrupted")["teacher_folder"])
    for resumed, uninterrupted in ((expanded.unet, straight.unet), (expanded.vae, straight.vae)):
        for (name, a), b in zip(resumed.state_dict().items(), uninterrupted.state_dict().values()):
            assert torch.equal(a, b), f"{name} differs between the interrupted and the uninterrupted expansion"


def test_expand_sd15_recipe_runs_at_a_tiny_size(tmp_path: Path, source4: Path) -> None:
    """The shipped GPU recipe validates and runs end to end with its loss weights, at one step on a micro teacher."""
    data = yaml.safe_load((EXPANSION.parent / "recipes" / "expand_sd15.yaml").read_text())
    tiny = {"steps": 1, "batch_size": 1, "checkpoint_every": 1, "num_threads": 1}
    data.update(teacher=str(source4), data={**data["data"], "crop_size": 32}, held_out_crops=1,
                vae_loop={**data["vae_loop"], **tiny}, unet_loop={**data["unet_loop"], **tiny})
    summary = run_expand_recipe(ExpandRecipe(**data), tmp_path / "out")
    assert summary["vae"]["steps"] == summary["unet"]["steps"] == 1
    assert load_teacher(tmp_path / "out").latent_channels == 16


def test_expand_refuses_bad_teachers(tmp_path: Path, source4: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "expand.yaml"
    recipe.write_text(yaml.safe_dump(_recipe(str(source4))))
    out = tmp_path / "out"
    base = ["expand", "--config", str(recipe), "--out", str(out)]
    assert_refused([*base, "--teacher", str(tmp_path / "missing")], tmp_path, capsys, match="not found")
    assert_refused([*base, "--teacher", "tiny-ldm"], tmp_path, capsys, match="already has a 16-channel latent")
    mismatch = tmp_path / "mismatch"  # an 8-channel VAE beside the 4-channel UNet
    mismatch.mkdir()
    teacher = load_teacher(DATA / "micro-bk.yaml", seed=0)
    save_teacher_weights(mismatch / "weights", teacher.unet, teacher.context, build_vae({**VAE, "latent_channels": 8}),
                         DDPMScheduler(), dtype=torch.float32)
    config = yaml.safe_load((DATA / "micro-bk.yaml").read_text())
    (mismatch / "teacher.yaml").write_text(yaml.safe_dump({**config, "weights": "weights"}))
    assert_refused([*base, "--teacher", str(mismatch)], tmp_path, capsys, match="8 latent channels, the UNet 4")
    assert_refused([*base, "--teacher", str(DATA / "micro-bk.yaml")], tmp_path, capsys, match="no VAE")


def _image_folder(root: Path, name: str, count: int, offset: int = 0) -> Path:
    """``count`` 96x80 PNG crops of scikit-image's photographs in ``root/name``."""
    folder = root / name
    folder.mkdir()
    for i, path in enumerate(builtin_image_files()[offset:offset + count]):
        Image.open(path).convert("RGB").crop((0, 0, 96, 80)).save(folder / f"{i}.png")
    return folder


def test_expansion_experiment_refuses_bad_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train, held = _image_folder(tmp_path, "train", 1), _image_folder(tmp_path, "held", 1, offset=1)
    base = ["run", str(EXPANSION), f"expansion.data.source={train}", f"expansion.unet_data.source={train}",
            f"expansion.held_out={held}", "--runs-dir", str(tmp_path / "runs")]
    assert_refused([*base, f"expansion.eval=[{held}, {train}]"], tmp_path, capsys,
                   match="expansion.eval[1]: '" + str(train) + "' is also a training folder")
    assert_refused([*base, f"expansion.eval=[{tmp_path / 'missing'}]"], tmp_path, capsys,
                   match="expansion.eval[0]: " + str(tmp_path / "missing") + ": image folder not found")
    assert_refused([*base, f"expansion.eval=[{held}]", "expansion.large=4"], tmp_path, capsys,
                   match="large (4) must exceed small (4)")
    assert_refused([*base, f"expansion.eval=[{held}]", "expansion.data.crop_size=30"], tmp_path, capsys,
                   match="expansion.data.crop_size: VAE training crops of 30 px are not a multiple of the VAE's "
                         "stride 4")


@pytest.mark.slow
def test_expansion_study_runs_resumes_and_compares_at_equal_steps(tmp_path: Path) -> None:
    """The study at a micro size: four models, (b), (c) and (d) at equal steps, curves, and a rerun resumes."""
    [(_, config)] = resolve(EXPANSION, [
        f"expansion.data.source={_image_folder(tmp_path, 'train', 2)}", "expansion.unet_data.source=builtin",
        f"expansion.eval=[{_image_folder(tmp_path, 'eval', 1, offset=2)}]",
        f"expansion.held_out={_image_folder(tmp_path, 'held', 1, offset=3)}", "expansion.held_out_crops=2",
        "expansion.data.crop_size=32", "expansion.unet_data.crop_size=32",
        "expansion.vae_loop={steps: 2, batch_size: 2, lr: 1.0e-3, checkpoint_every: 1, log_every: 1, num_threads: 1}",
        "expansion.expand_lr=2.5e-4",
        "expansion.unet_loop={steps: 2, batch_size: 2, lr: 1.0e-3, ema_decay: 0.9, checkpoint_every: 1, "
        "num_threads: 1}"])
    results = run_study(config.expansion, tmp_path / "study")
    models = results["models"]
    assert [models[m]["latent_channels"] for m in "abcd"] == [4, 16, 16, 4]
    assert models["b"]["steps"] == models["c"]["steps"] == models["d"]["steps"] == {"vae": 4, "unet": 4}
    assert [s for s, _ in models["a"]["curve"]] == [1, 2] and [s for s, _ in models["b"]["curve"]] == [3, 4]
    assert [s for s, _ in models["c"]["curve"]] == [s for s, _ in models["d"]["curve"]] == [1, 2, 3, 4]
    assert models["b"]["widened_start"][0] == 2
    assert set(models["c"]["psnr"]["eval"]) == set(models["c"]["psnr_tiled"]["eval"]) == {"rgb", "y"}
    assert models["c"]["psnr_tiled"] != models["c"]["psnr"]  # 32 px squares of the 96x80 images, not the whole
    lrs = {run: [json.loads(line)["lr"] for line in (tmp_path / "study" / run / "metrics.jsonl").open()]
           for run in ("a_vae", "b_expanded/vae")}
    assert max(lrs["b_expanded/vae"]) <= 2.5e-4 < max(lrs["a_vae"])  # (b)'s VAE stage fine-tunes at expand_lr
    vae_steps = {m: [s for s, _ in models[m]["vae_curve"]] for m in "abcd"}
    assert vae_steps == {"a": [1, 2], "b": [3, 4], "c": [1, 2, 3, 4], "d": [1, 2, 3, 4]}  # (b) continues (a)
    assert all(set(point) == {"rgb", "y"} for m in "abcd" for _, point in models[m]["vae_curve"])
    assert set(results["wall_s"]) >= {"d_vae", "d_teacher"}
    assert models["c"]["vae_curve"][-1][1] != models["c"]["vae_curve"][0][1]  # each checkpoint's own weights
    again = run_study(config.expansion, tmp_path / "study")
    assert again["wall_s"] == results["wall_s"] and again["models"] == models  # nothing retrained, same figures
    assert "| (b) expanded 16-channel | 16 | 4 | 4 |" in markdown(results)
    assert "| (d) 4-channel as long as (c) | 4 | 4 | 4 |" in markdown(results)
    assert set(models["b"]["psnr_tiled_old_subspace"]["eval"]) == {"rgb", "y"}
    assert "| (b) expanded 16-channel, its first 4 latent channels alone (the rest zero) |" in markdown(results)
    assert "VAE reconstruction PSNR" in markdown(results) and "reconstructed in 32 px squares" in markdown(results)


def test_tiled_reconstruction_stitches_independent_squares(vae4) -> None:
    """Each square is reconstructed alone and put back in place; the edge is padded and cropped; a tile that is
    not a multiple of the stride is refused."""
    image = torch.rand(3, 20, 28, generator=torch.Generator().manual_seed(3))
    tiled = reconstruct(vae4, image, tile=8)
    assert tiled.shape == image.shape
    torch.testing.assert_close(tiled[:, 8:16, 16:24], reconstruct(vae4, image[:, 8:16, 16:24]))
    padded = torch.nn.functional.pad(image[None], (0, 4, 0, 4), mode="replicate")[0]  # 24 x 32
    torch.testing.assert_close(tiled[:, 16:, 24:], reconstruct(vae4, padded[:, 16:24, 24:32])[:, :4, :4])
    assert not torch.allclose(tiled, reconstruct(vae4, image))  # GroupNorm sees each square's own statistics
    with pytest.raises(ValueError, match="tile 5 is not a multiple of the VAE's stride 2"):
        reconstruct(vae4, image, tile=5)


def test_linear_denoiser_loss_is_the_gaussian_optimum() -> None:
    """Unit-variance Gaussian latents: the best affine noise predictor's MSE is alpha_bar(t); constant latents: 0."""
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    latents = torch.randn(256, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(0)  # the function's noise, then its timesteps
    torch.randn(latents.shape, generator=generator)
    timesteps = torch.randint(0, 1000, (256,), generator=generator)
    expected = float(scheduler.alphas_cumprod[timesteps].mean())
    assert linear_denoiser_loss(latents, scheduler) == pytest.approx(expected, abs=0.02)
    assert linear_denoiser_loss(torch.zeros_like(latents), scheduler) == pytest.approx(0.0, abs=1e-6)


def test_expand_vae_distills_only_the_old_subspace(vae4) -> None:
    """At init the old-subspace decode is the old VAE's (distill/features/latent terms 0); the full decode answers
    only to the image, so the extra channels are free to add detail."""
    vae16 = expand_vae(vae4, 16)
    task = ExpandVaeTask(vae16, vae4, ExpandVaeLoss())
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, metrics = task.loss(vae16, images, torch.Generator().manual_seed(0))
    assert metrics["distill"] == pytest.approx(0.0, abs=1e-10) and metrics["features"] == pytest.approx(0.0, abs=1e-10)
    assert metrics["latent"] == pytest.approx(0.0, abs=1e-10) and metrics["l2"] > 0
