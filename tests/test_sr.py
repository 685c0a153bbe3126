"""SR on the compact backbone: adaptation, model folders, tiling, colour fix, metrics, recipes and CLIs (tiny)."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
import yaml
from diffusers import DDPMScheduler
from PIL import Image

from tocsr_nas.cli import main
from tocsr_nas.compact import CompactUNet
from tocsr_nas.degradations import BicubicDegradation
from tocsr_nas.errors import ConfigError
from tocsr_nas.sr.adapt import adapt_unet
from tocsr_nas.sr.colorfix import adain_fix, low_frequency, wavelet_fix
from tocsr_nas.sr.evaluate import evaluate_files, reference_methods
from tocsr_nas.sr.metrics import psnr_y, rgb_to_y, ssim_y
from tocsr_nas.sr.model import SRModel, load_sr_model, save_sr_model
from tocsr_nas.sr.pipeline import upsample_lr, upscale_image
from tocsr_nas.sr.shift import ShiftConfig
from tocsr_nas.sr.tiling import tile_starts, tiled_apply
from tocsr_nas.sr.train import SRAdaptRecipe, SROneStepRecipe, run_sr_adapt, run_sr_onestep
from tocsr_nas.supernet import Supernet
from tocsr_nas.vae import build_vae, save_vae

from .conftest import MICRO_TEACHER

MICRO_VAE = dict(in_channels=3, out_channels=3, latent_channels=16, down_block_types=["DownEncoderBlock2D"] * 3,
                 up_block_types=["UpDecoderBlock2D"] * 3, block_out_channels=[8, 8, 16], layers_per_block=1,
                 norm_num_groups=4, mid_block_add_attention=False, sample_size=32)


@pytest.fixture(scope="module")
def micro_vae():
    torch.manual_seed(0)
    return build_vae(MICRO_VAE).eval()


@pytest.fixture(scope="module")
def vae_dir(micro_vae, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("vae")
    save_vae(micro_vae, folder)
    return folder


def _photo(size: int = 64) -> torch.Tensor:
    image = torch.from_numpy(skimage.data.astronaut()[100:100 + size, 180:180 + size].astype(np.float32) / 255)
    return image.permute(2, 0, 1).contiguous()


def _model(micro_teacher, micro_vae, kind: str = "sr-onestep", zero_out: bool = False) -> SRModel:
    net = adapt_unet(micro_teacher.unet, micro_teacher.context(1)[0].detach())
    if zero_out:  # the UNet then outputs 0: a one-step model reproduces the VAE round trip of the bicubic image
        torch.nn.init.zeros_(net.unet.conv_out.weight)
        torch.nn.init.zeros_(net.unet.conv_out.bias)
    return SRModel(net=net.eval(), vae=micro_vae, scheduler=DDPMScheduler(), kind=kind, scale=4,
                   timestep=200 if kind == "sr-onestep" else None,
                   shift=ShiftConfig(steps=5) if kind == "sr-diffusion" else None)


@pytest.fixture(scope="module")
def onestep_dir(micro_teacher, micro_vae, tmp_path_factory) -> Path:
    return save_sr_model(_model(micro_teacher, micro_vae), tmp_path_factory.mktemp("sr") / "onestep")


# --- adaptation --------------------------------------------------------------------------------------------------

@torch.no_grad()
def test_zero_init_lr_channels_keep_the_original_output(micro_teacher, micro_space):
    inputs = micro_teacher.example_inputs(batch_size=2)
    context = micro_teacher.context(1)[0]
    lr_latent = torch.randn_like(inputs["sample"])
    compact = Supernet(micro_teacher, micro_space).extract(micro_space.sample(np.random.default_rng(3)))
    for unet in (micro_teacher.unet, compact):
        adapted = adapt_unet(unet, context).eval()
        expected = unet(**inputs).sample
        got = adapted(inputs["sample"], lr_latent, inputs["timestep"])
        assert torch.equal(got, expected)
        assert adapted.unet is not unet  # the original is left untouched
        conv_in = unet.conv_in
        assert conv_in.in_channels == 16


def test_model_folder_round_trip_and_kind_checks(micro_teacher, micro_vae, micro_space, tmp_path):
    compact = Supernet(micro_teacher, micro_space).extract(micro_space.sample(np.random.default_rng(1)))
    net = adapt_unet(compact, micro_teacher.context(1)[0].detach())
    with torch.no_grad():
        net.unet.conv_in.weight.normal_()  # non-zero LR weights must survive the round trip
    model = SRModel(net=net.eval(), vae=micro_vae, scheduler=DDPMScheduler(), kind="sr-diffusion", scale=4)
    folder = save_sr_model(model, tmp_path / "sr")
    loaded = load_sr_model(folder, kind="sr-diffusion")
    x, lr = torch.randn(1, 16, 8, 8), torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        assert torch.allclose(loaded.net(x, lr, torch.tensor([3])), net(x, lr, torch.tensor([3])), atol=1e-6)
    assert isinstance(loaded.net.unet, CompactUNet) and loaded.scale == 4
    with pytest.raises(ConfigError, match="kind"):
        load_sr_model(folder, kind="sr-onestep")
    compact.save_pretrained(tmp_path / "compact")
    with pytest.raises(ConfigError, match="not an SR model folder"):
        load_sr_model(tmp_path / "compact")


# --- tiling, colour fix ------------------------------------------------------------------------------------------

def _near_seams(length: int, tile: int, overlap: int, align: int, radius: int) -> torch.Tensor:
    """Positions within ``radius`` of an interior tile edge (where a local function's tile output is cut)."""
    near = torch.zeros(length, dtype=torch.bool)
    for start in tile_starts(length, tile, overlap, align):
        for edge in (start, start + tile):
            if 0 < edge < length:
                near[max(0, edge - radius):edge + radius] = True
    return near


def test_tiled_apply_equals_untiled_away_from_seams():
    torch.manual_seed(0)
    image = torch.rand(3, 70, 90)
    conv = torch.nn.Conv2d(3, 2, 5, padding=2)  # a local function: receptive radius 2

    def fn(region):
        top, left, bottom, right = region
        with torch.no_grad():
            return conv(image[None, :, top:bottom, left:right])[0]

    full = fn((0, 0, 70, 90))
    tiled = tiled_apply(fn, 70, 90, tile=32, overlap=12, align=2)
    assert tiled.shape == full.shape
    rows, cols = ~_near_seams(70, 32, 12, 2, 2), ~_near_seams(90, 32, 12, 2, 2)
    assert rows.sum() > 40 and cols.sum() > 50
    assert torch.allclose(tiled[:, rows][:, :, cols], full[:, rows][:, :, cols], atol=1e-6)
    assert not torch.allclose(tiled, full, atol=1e-6)  # the seams themselves do differ
    assert torch.allclose(tiled_apply(fn, 70, 90, tile=128, overlap=12), full)


class LocalVAE(torch.nn.Module):
    """A stand-in VAE with the diffusers interface whose encoder and decoder are local (no GroupNorm)."""

    config = SimpleNamespace(scaling_factor=0.5, block_out_channels=(1, 1, 1))

    def encode(self, images: torch.Tensor) -> SimpleNamespace:
        mean = F.avg_pool2d(images, 4).repeat(1, 6, 1, 1)[:, :16]
        return SimpleNamespace(latent_dist=SimpleNamespace(mean=mean))

    def decode(self, latents: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(sample=F.interpolate(latents[:, :3], scale_factor=4, mode="bilinear"))


@pytest.mark.parametrize("kind", ["sr-onestep", "sr-diffusion"])
def test_tiled_and_untiled_upscaling_agree_away_from_seams(micro_teacher, micro_vae, kind):
    # A zero-output UNet and a local VAE make the whole pipeline local, so tiling must not change the result
    # away from seams: this checks padding, alignment, the per-tile noise slices, blending and cropping.
    model = _model(micro_teacher, micro_vae, kind=kind, zero_out=True)
    model.vae = LocalVAE()
    lr = BicubicDegradation(4)(_photo(120))[:, :, :28]  # 30x28 LR: the 120x112 HR is padded to 128x112
    untiled = upscale_image(model, lr, tile=1024, steps=3)
    tiled = upscale_image(model, lr, tile=64, overlap=32, steps=3)
    assert tiled.shape == untiled.shape == (3, 120, 112)
    rows, cols = ~_near_seams(128, 64, 32, 16, 8)[:120], ~_near_seams(112, 64, 32, 16, 8)
    assert rows.sum() > 40 and cols.sum() > 40
    assert torch.allclose(tiled[:, rows][:, :, cols], untiled[:, rows][:, :, cols], atol=1e-5)
    assert float((untiled - upsample_lr(lr, 4)).abs().mean()) > 1e-3  # the outputs are not trivially bicubic


def test_upscaling_in_bfloat16_on_the_cpu_stays_close_to_float32(micro_teacher, micro_vae):
    model = _model(micro_teacher, micro_vae, kind="sr-diffusion")
    lr = BicubicDegradation(4)(_photo(64))
    full = upscale_image(model, lr, steps=2, device="cpu")
    half = upscale_image(model, lr, steps=2, device="cpu", dtype=torch.bfloat16)
    assert half.dtype is torch.float32 and half.device.type == "cpu" and half.shape == full.shape
    assert 0 < float((full - half).abs().mean()) < 0.05  # bfloat16 really ran, and stayed close


def test_residual_output_of_an_unchanged_latent_is_bicubic(micro_teacher, micro_vae):
    model = _model(micro_teacher, micro_vae, zero_out=True)  # one-step: x0 = the LR latent itself
    lr = BicubicDegradation(4)(_photo(64))
    residual = upscale_image(model, lr, output="residual")
    assert torch.allclose(residual, upsample_lr(lr, 4), atol=1e-5)
    assert not torch.allclose(upscale_image(model, lr), residual, atol=1e-2)  # direct: the VAE round trip


def test_color_fixes():
    torch.manual_seed(0)
    reference, image = torch.rand(3, 40, 40), torch.rand(3, 40, 40) * 0.5 + 0.3
    fixed = adain_fix(image, reference)
    assert torch.allclose(fixed.mean((1, 2)), reference.mean((1, 2)), atol=1e-5)
    assert torch.allclose(fixed.std((1, 2)), reference.std((1, 2)), atol=1e-4)
    wave = wavelet_fix(image, reference)
    assert torch.allclose(low_frequency(wave), low_frequency(reference), atol=0.05)
    assert torch.allclose(wave - low_frequency(wave), image - low_frequency(image), atol=0.05)


# --- metrics and evaluation --------------------------------------------------------------------------------------

def test_metrics_match_scikit_image():
    from skimage.color import rgb2ycbcr
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    hr = _photo(96)
    sr = upsample_lr(BicubicDegradation(4)(hr), 4)
    y_sr = rgb2ycbcr(((sr * 255).round() / 255).permute(1, 2, 0).double().numpy())[..., 0]
    y_hr = rgb2ycbcr(((hr * 255).round() / 255).permute(1, 2, 0).double().numpy())[..., 0]
    assert np.allclose(rgb_to_y((hr * 255).round() / 255).numpy(), y_hr, atol=1e-6)
    y_sr, y_hr = y_sr[4:-4, 4:-4], y_hr[4:-4, 4:-4]
    assert psnr_y(sr, hr, 4) == pytest.approx(peak_signal_noise_ratio(y_hr, y_sr, data_range=255), abs=1e-6)
    reference = structural_similarity(y_hr, y_sr, data_range=255, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False)
    assert ssim_y(sr, hr, 4) == pytest.approx(reference, abs=2e-3)
    assert psnr_y(hr, hr) == float("inf") and ssim_y(hr, hr) == pytest.approx(1.0)


def test_lpips_from_local_files(tmp_path):
    from safetensors.torch import save_file

    from tocsr_nas.sr.metrics import LPIPS, load_lpips

    torch.manual_seed(0)
    reference = LPIPS()
    features = {f"features.{i}.{k}": getattr(reference.convs[n], k).detach()
                for n, i in enumerate((0, 3, 6, 8, 10)) for k in ("weight", "bias")}
    lins = {f"lin{n}.model.1.weight": lin.weight.detach().abs() for n, lin in enumerate(reference.lins)}
    save_file(features, str(tmp_path / "alex.safetensors"))
    torch.save(lins, tmp_path / "lin.pth")
    lpips = load_lpips(tmp_path / "alex.safetensors", tmp_path / "lin.pth")
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    assert torch.allclose(lpips(x, x), torch.zeros(2)) and (lpips(x, y) > 0).all()
    with pytest.raises(ConfigError, match="missing LPIPS tensor"):
        load_lpips(tmp_path / "lin.pth", tmp_path / "lin.pth")


def test_evaluation_reproduces_bicubic_psnr_on_a_known_pair(tmp_path, micro_vae, caplog):
    hr = _photo(99)  # not a multiple of 4: the protocol crops to 96
    Image.fromarray((hr * 255).round().byte().permute(1, 2, 0).numpy()).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(tmp_path / "tiny.png")  # smaller than x4 allows
    (tmp_path / "broken.png").write_bytes(b"not a png")
    files = sorted(tmp_path.glob("*.png"))
    rows = evaluate_files(reference_methods(4, micro_vae), files, 4, dataset="t")
    bicubic = next(r for r in rows if r["method"] == "bicubic")
    hr_q = (hr[:, :96, :96] * 255).round() / 255
    expected = psnr_y(upsample_lr(BicubicDegradation(4)(hr_q), 4), hr_q, 4)
    assert bicubic["psnr_y"] == pytest.approx(expected, abs=1e-9)
    assert 20 < bicubic["psnr_y"] < 40
    assert {r["method"] for r in rows} == {"bicubic", "vae-recon"} and {r["image"] for r in rows} == {"a.png"}
    assert "tiny.png" in caplog.text and "broken.png" in caplog.text


# --- CLIs ---------------------------------------------------------------------------------------------------------

def test_upscale_cli_folder_modes_and_bad_input(onestep_dir, tmp_path, caplog):
    src = tmp_path / "in"
    src.mkdir()
    photo = (_photo(16) * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(photo).save(src / "rgb.png")
    Image.fromarray(photo[..., 0]).save(src / "gray.png")
    Image.fromarray(np.concatenate([photo, np.full((16, 16, 1), 128, np.uint8)], axis=2)).save(src / "rgba.png")
    Image.fromarray(photo[..., 1].astype(np.uint16) * 257).save(src / "deep.png")
    Image.fromarray(photo[:2, :2]).save(src / "small.png")
    (src / "corrupt.png").write_bytes(b"\x89PNG garbage")
    (src / "notes.txt").write_text("hello")
    out = tmp_path / "out"
    assert main(["upscale", str(src), "-o", str(out), "--model", str(onestep_dir), "--scale", "4"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["deep.png", "gray.png", "rgb.png", "rgba.png"]
    with Image.open(out / "rgb.png") as im:
        assert im.size == (64, 64) and im.mode == "RGB"
    with Image.open(out / "gray.png") as im:
        assert im.mode == "L"
    with Image.open(out / "rgba.png") as im:
        assert im.mode == "RGBA" and abs(np.asarray(im)[..., 3].mean() - 128) < 1
    with Image.open(out / "deep.png") as im:
        assert im.mode.startswith("I") and im.size == (64, 64)
    for name in ("corrupt.png", "small.png", "notes.txt"):
        assert name in caplog.text
    # an existing output is refused unless --overwrite; a wrong scale or a non-SR folder is a one-line error
    assert main(["upscale", str(src / "rgb.png"), "-o", str(out / "rgb.png"), "--model", str(onestep_dir)]) == 2
    assert main(["upscale", str(src / "rgb.png"), "-o", str(out / "rgb.png"), "--model", str(onestep_dir),
                 "--overwrite"]) == 0
    assert main(["upscale", str(src / "rgb.png"), "-o", str(tmp_path / "x.png"), "--model", str(onestep_dir),
                 "--scale", "2"]) == 2
    assert main(["upscale", str(src / "rgb.png"), "-o", str(tmp_path / "x.png"), "--model", str(src)]) == 2
    assert main(["upscale", str(src / "small.png"), "-o", str(tmp_path / "y.png"), "--model", str(onestep_dir)]) == 2


def test_evaluate_sr_cli(onestep_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray((_photo(48) * 255).round().byte().permute(1, 2, 0).numpy()).save(data / "p.png")
    out = tmp_path / "eval"
    assert main(["evaluate-sr", "--model", f"one={onestep_dir}", "--data", str(data), "--scale", "4", "--out", str(out),
                 "--latency-size", "8", "--latency-repeats", "1"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in results["summary"]] == ["bicubic", "vae-recon", "one"]
    assert results["latency"]["one"]["seconds"] > 0
    assert (out / "per_image.csv").read_text().count("\n") == 4
    assert "bicubic" in (out / "summary.md").read_text()


# --- recipes ------------------------------------------------------------------------------------------------------

LOOP = {"steps": 2, "batch_size": 1, "lr": 1e-4, "warmup_steps": 0, "checkpoint_every": 1, "log_every": 1,
        "num_threads": 1}


def test_recipes_train_resume_and_export(vae_dir, tmp_path, micro_space_path):
    adapt = SRAdaptRecipe.model_validate({
        "backbone": {"teacher": str(MICRO_TEACHER), "space": str(micro_space_path),
                     "arch": "down:R=slim(width=0.5),A=lin;mid:R=T,A=T;up:R=I,A=T"},
        "vae": str(vae_dir), "scale": 4, "shift": {"steps": 5, "kappa": 0.5}, "data": {"source": "builtin", "crop_size": 32},
        "loop": LOOP})
    summary = run_sr_adapt(adapt, tmp_path / "adapt")
    diffusion = load_sr_model(summary["model"], kind="sr-diffusion")
    assert isinstance(diffusion.net.unet, CompactUNet) and diffusion.shift == ShiftConfig(steps=5, kappa=0.5)
    onestep = SROneStepRecipe.model_validate({
        "init": summary["model"], "timestep": 100, "teacher_steps": 2, "data": {"source": "builtin", "crop_size": 32},
        "loop": {**LOOP, "steps": 3}, "loss": {"adversarial": 0.1, "disc_channels": 4, "latent_l1": 1.0}})
    partial = run_sr_onestep(onestep, tmp_path / "one", stop_after=2)
    assert partial["steps"] == 2 and "model" not in partial
    final = run_sr_onestep(onestep, tmp_path / "one")
    assert final["resumed_from"] == 2 and final["steps"] == 3
    assert {"teacher_l2", "latent_l1", "pixel_l1", "adv_g", "adv_d"} <= set(final["final"])
    model = load_sr_model(final["model"], kind="sr-onestep")
    assert model.timestep == 100
    out = upscale_image(model, torch.rand(3, 8, 8))
    assert out.shape == (3, 32, 32) and torch.isfinite(out).all()

    further = {"init": final["model"], "timestep": 100, "data": {"source": "builtin", "crop_size": 32},
               "loop": {**LOOP, "steps": 1}, "loss": {"teacher_l2": 0.0, "latent_l1": 1.0, "pixel_l1": 0.0}}
    again = run_sr_onestep(SROneStepRecipe.model_validate(further), tmp_path / "further")
    trained = load_sr_model(again["model"], kind="sr-onestep")
    assert trained.timestep == 100 and any(
        not torch.equal(a, b) for a, b in zip(trained.net.state_dict().values(), model.net.state_dict().values()))
    chain = trained.info["init_info"]  # every stage's recipe: this one's, its init's, and the init's init
    assert chain["recipe"]["loss"]["adversarial"] == 0.1 and chain["init_info"]["recipe"]["recipe"] == "sr-adapt"
    with pytest.raises(ConfigError, match="no multi-step teacher targets"):
        run_sr_onestep(SROneStepRecipe.model_validate({**further, "loss": {"teacher_l2": 1.0}}), tmp_path / "bad")
    with pytest.raises(ConfigError, match="timestep") as err:
        run_sr_onestep(SROneStepRecipe.model_validate({**further, "timestep": 200}), tmp_path / "bad")
    assert "(allowed: 100)" in str(err.value) and not (tmp_path / "bad").exists()


def test_recipe_files_validate_and_bad_values():
    root = Path(__file__).resolve().parents[1] / "experiments" / "recipes"
    models = {"sr-adapt": SRAdaptRecipe, "sr-onestep": SROneStepRecipe}
    recipes = [yaml.safe_load(path.read_text()) for path in sorted(root.glob("sr_*.yaml"))]
    checked = [models[r["recipe"]].model_validate(r) for r in recipes if r["recipe"] in models]
    assert len(checked) >= 5  # sr_adapt, sr_onestep, sr_x4_compact_{adapt,onestep}, sr_x4_diffusion
    from tocsr_nas.config_io import validate

    with pytest.raises(ConfigError, match="scale"):
        validate(SRAdaptRecipe, {"scale": 5, "loop": LOOP}, source="x.yaml")
