"""Tests for tocsr_nas.degradations: MATLAB bicubic imresize, Real-ESRGAN pipeline, configs, factory."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from skimage import data

from tocsr_nas.config_io import validate
from tocsr_nas.degradations import (
    BicubicDegradation,
    RealESRGANConfig,
    RealESRGANDegradation,
    imresize,
    load_config,
    make_degradation,
    sample_blur_kernel,
)
from tocsr_nas.degradations.config import BlurConfig
from tocsr_nas.degradations.kernels import anisotropic_kernel, filter2d, sinc_kernel
from tocsr_nas.degradations.ops import add_gaussian_noise, add_poisson_noise, jpeg
from tocsr_nas.errors import ConfigError

RECIPE = Path(__file__).resolve().parents[1] / "experiments" / "recipes" / "degradation_realesrgan.yaml"
FAMILIES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")


# ----------------------------------------------------------------------------------------------------------------
# An independent, deliberately naive reference of MATLAB's imresize(..., 'bicubic'), written from its documented
# algorithm: for every output pixel, sum over every input tap with a nonzero kernel weight, normalised, with
# out-of-range taps mirrored (half-sample symmetric).

def _cubic_scalar(x: float) -> float:
    x = abs(x)
    if x <= 1:
        return 1.5 * x**3 - 2.5 * x**2 + 1
    if x <= 2:
        return -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2
    return 0.0


def _mirror(k: int, n: int) -> int:
    while not 0 <= k < n:
        k = -k - 1 if k < 0 else 2 * n - 1 - k
    return k


def _taps(out_len: int, in_len: int, s: float) -> list[list[tuple[int, float]]]:
    width = 4 / s if s < 1 else 4
    rows = []
    for i in range(1, out_len + 1):
        u = i / s + 0.5 * (1 - 1 / s)
        taps = {}
        for k in range(math.floor(u - width) - 2, math.ceil(u + width) + 3):
            w = s * _cubic_scalar(s * (u - k)) if s < 1 else _cubic_scalar(u - k)
            if w != 0:
                taps[k] = w
        total = sum(taps.values())
        rows.append([(_mirror(k - 1, in_len), w / total) for k, w in taps.items()])
    return rows


def _reference_imresize(img: np.ndarray, out_hw: tuple[int, int], scales: tuple[float, float]) -> np.ndarray:
    rows, cols = _taps(out_hw[0], img.shape[0], scales[0]), _taps(out_hw[1], img.shape[1], scales[1])
    out = np.zeros(out_hw)
    for i, row_taps in enumerate(rows):
        for j, col_taps in enumerate(cols):
            out[i, j] = sum(wr * wc * img[r, c] for r, wr in row_taps for c, wc in col_taps)
    return out


@pytest.mark.parametrize("scale", [1 / 4, 1 / 3, 1 / 2, 0.6, 1.0, 1.5, 2, 3, 4])
def test_imresize_matches_naive_reference(scale: float) -> None:
    img = np.random.default_rng(0).random((13, 11))
    out = imresize(torch.from_numpy(img), scale).numpy()
    expected_hw = (math.ceil(13 * scale - 1e-9), math.ceil(11 * scale - 1e-9))
    assert out.shape == expected_hw
    np.testing.assert_allclose(out, _reference_imresize(img, expected_hw, (scale, scale)), atol=1e-12)


def test_imresize_size_argument_uses_per_axis_scale() -> None:
    img = np.random.default_rng(1).random((12, 9))
    out = imresize(torch.from_numpy(img), size=(5, 14)).numpy()
    np.testing.assert_allclose(out, _reference_imresize(img, (5, 14), (5 / 12, 14 / 9)), atol=1e-12)


def test_imresize_hand_derived_values() -> None:
    # x2 of [1, 2, 4]: u = x/2 + 1/4; cubic(0.25)=0.8671875, cubic(0.75)=0.2265625, cubic(1.25)=-0.0703125,
    # cubic(1.75)=-0.0234375; mirrored taps: index 0 -> 1, -1 -> 2, 4 -> 3, 5 -> 2 (1-based).
    # e.g. out[1] = -0.0234375*2 + 0.2265625*1 + 0.8671875*1 - 0.0703125*2 = 0.90625.
    up = imresize(torch.tensor([[1.0, 2.0, 4.0]], dtype=torch.float64), 2)
    expected_up = [0.90625, 1.15625, 1.65625, 2.4765625, 3.6171875, 4.1875]
    assert up.shape == (2, 6)
    np.testing.assert_allclose(up.numpy(), [expected_up, expected_up], atol=1e-12)
    # /2 of [1, 2, 4, 8] with antialiasing: h(d) = 0.5*cubic(d/2) at d = ±0.5, ±1.5, ±2.5, ±3.5 gives
    # 0.43359375, 0.11328125, -0.03515625, -0.01171875; out[1] (u=1.5) = 1.375, out[2] (u=3.5) = 6.125.
    down = imresize(torch.tensor([[1.0, 2.0, 4.0, 8.0]] * 2, dtype=torch.float64), 0.5)
    np.testing.assert_allclose(down.numpy(), [[1.375, 6.125]], atol=1e-12)
    # Separable: an outer product resizes to the outer product of the 1-D results.
    outer = imresize(torch.outer(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 2.0, 4.0])).double(), 2)
    np.testing.assert_allclose(outer.numpy(), np.outer(expected_up, expected_up), atol=1e-12)


@pytest.mark.parametrize("scale", [1 / 4, 1 / 3, 0.5, 2, 3, 4])
def test_imresize_keeps_constant_images_constant(scale: float) -> None:
    out = imresize(torch.full((3, 17, 10), 0.37), scale)
    torch.testing.assert_close(out, torch.full_like(out, 0.37))


def test_imresize_output_size_rules_and_batching() -> None:
    assert imresize(torch.rand(3, 512, 512), 1 / 4).shape == (3, 128, 128)
    assert imresize(torch.rand(2, 3, 10, 9), 1 / 4).shape == (2, 3, 3, 3)  # ceil(2.5), ceil(2.25)
    assert imresize(torch.rand(1, 9, 7), 1 / 3).shape == (1, 3, 3)  # ceil(3), ceil(2.33)
    assert imresize(torch.rand(5, 6), (2, 0.5)).shape == (10, 3)
    x4 = torch.rand(2, 3, 32, 24)
    down = imresize(x4, 1 / 4)
    assert down.shape == (2, 3, 8, 6) and down.dtype == x4.dtype
    torch.testing.assert_close(down[1], imresize(x4[1], 1 / 4))
    with pytest.raises(ValueError):
        imresize(torch.zeros(4, 4, dtype=torch.uint8), 0.5)
    with pytest.raises(ValueError):
        imresize(torch.zeros(4, 4), 0.5, size=(2, 2))


# ----------------------------------------------------------------------------------------------------------------
# Bicubic degradation and factory

def _astronaut(side: int = 96) -> torch.Tensor:
    img = torch.from_numpy(data.astronaut()[:side * 2:2, :side * 2:2].copy()).permute(2, 0, 1)
    return img.float() / 255.0


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_degradation(scale: int) -> None:
    hr = _astronaut(98)  # not a multiple of 3 or 4: cropped bottom/right
    lr = BicubicDegradation(scale)(hr)
    crop = 98 - 98 % scale
    assert lr.shape == (3, 98 // scale, 98 // scale)
    torch.testing.assert_close(lr, (imresize(hr[:, :crop, :crop], 1 / scale).clamp(0, 1) * 255).round() / 255)
    torch.testing.assert_close(lr * 255, (lr * 255).round())


def test_make_degradation_names_configs_and_errors(tmp_path: Path) -> None:
    assert isinstance(make_degradation("bicubic"), BicubicDegradation)
    assert make_degradation("bicubic", scale=3).scale == 3
    real = make_degradation("realesrgan", scale=2)
    assert isinstance(real, RealESRGANDegradation) and real.scale == 2
    assert make_degradation({"name": "realesrgan", "final": {"sinc_prob": 0.0}}).config.final.sinc_prob == 0.0
    assert make_degradation(RealESRGANConfig(scale=3)).scale == 3
    path = tmp_path / "bic.yaml"
    path.write_text("name: bicubic\nscale: 2\nquantize: false\n")
    assert make_degradation(path).scale == 2
    with pytest.raises(ConfigError, match="unknown degradation.*allowed: .*bicubic"):
        make_degradation("nearest")
    path.write_text("name: lanczos\n")
    with pytest.raises(ConfigError, match=r"bic\.yaml: name: unknown degradation"):
        make_degradation(path)


# ----------------------------------------------------------------------------------------------------------------
# Real-ESRGAN pipeline

def _quiet(**overrides: Any) -> RealESRGANConfig:
    """A config with every random step switched off, then ``overrides`` (nested dicts) applied."""
    off = {"blur": {"prob": 0.0}, "resize": {"probs": {"up": 0.0, "down": 0.0, "keep": 1.0}},
           "noise": {"prob": 0.0}, "jpeg": {"prob": 0.0}}
    cfg: dict[str, Any] = {"stage1": {k: dict(v) for k, v in off.items()},
                           "stage2": {k: dict(v) for k, v in off.items()},
                           "final": {"sinc_prob": 0.0, "jpeg": {"prob": 0.0}}}
    for section, values in overrides.items():
        if isinstance(values, dict):
            for key, value in values.items():
                cfg[section][key] = {**cfg[section].get(key, {}), **value} if isinstance(value, dict) else value
        else:
            cfg[section] = values
    return validate(RealESRGANConfig, cfg, source="test")


def test_realesrgan_is_deterministic_per_seed() -> None:
    hr = _astronaut(64)
    degrade = RealESRGANDegradation()
    first, again = degrade(hr, 7), degrade(hr, torch.Generator().manual_seed(7))
    assert torch.equal(first, again)
    outputs = [degrade(hr, seed) for seed in range(4)]
    assert all(not torch.equal(outputs[0], other) for other in outputs[1:])


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_realesrgan_shapes_and_8bit_output(scale: int) -> None:
    hr = _astronaut(72)
    degrade = RealESRGANDegradation(RealESRGANConfig(scale=scale))
    for seed in range(3):
        lr = degrade(hr, seed)
        assert lr.shape == (3, 72 // scale, 72 // scale) and lr.dtype == hr.dtype
        assert lr.min() >= 0 and lr.max() <= 1
        torch.testing.assert_close(lr * 255, (lr * 255).round())
    gray = degrade(hr[:1], 0)
    assert gray.shape == (1, 72 // scale, 72 // scale)


def test_disabled_pipeline_is_plain_resize() -> None:
    hr = _astronaut(32)
    lr, params = RealESRGANDegradation(_quiet(scale=1)).degrade(hr, 0)
    torch.testing.assert_close(lr, (hr * 255).round() / 255)
    for stage in ("stage1", "stage2"):
        record = params[stage]
        assert record["blur"] is None and record["noise"] is None and record["jpeg"] is None
        assert record["resize"]["direction"] == "keep"
    assert params["final"]["sinc"] is None and params["final"]["jpeg"] is None


@pytest.mark.parametrize("family", FAMILIES)
def test_sampled_kernels_sum_to_one_with_configured_size(family: str) -> None:
    probs = {name: float(name == family) for name in FAMILIES}
    config = BlurConfig(kernel_sizes=(5, 9), kernel_probs=probs, sigma=(0.5, 2.0), sinc_prob=0.0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        kernel, params = sample_blur_kernel(config, gen)
        assert params["type"] == family and kernel.shape == (params["size"],) * 2 and params["size"] in (5, 9)
        assert abs(kernel.sum().item() - 1) < 1e-12 and kernel.min() >= 0
        assert 0.5 <= params["sigma_x"] <= 2.0 and 0.5 <= params["sigma_y"] <= 2.0
        torch.testing.assert_close(kernel, kernel.flip(0, 1))  # point-symmetric
        if family.endswith("iso") and "aniso" not in family:
            assert params["sigma_x"] == params["sigma_y"] and params["rotation"] == 0.0
            torch.testing.assert_close(kernel, kernel.T)
        if family.startswith("generalized"):
            assert 0.5 <= params["beta"] <= 4.0
        if family.startswith("plateau"):
            assert 1.0 <= params["beta"] <= 2.0


def test_sinc_kernels() -> None:
    gen = torch.Generator().manual_seed(0)
    config = BlurConfig(kernel_sizes=(7, 21), sinc_prob=1.0, sinc_cutoff=(0.5, 0.5), sinc_cutoff_small=(0.9, 0.9))
    for _ in range(8):
        kernel, params = sample_blur_kernel(config, gen)
        assert params["type"] == "sinc" and kernel.shape == (params["size"],) * 2
        assert math.isclose(params["cutoff"], (0.9 if params["size"] == 7 else 0.5) * math.pi)
        assert abs(kernel.sum().item() - 1) < 1e-12
    ringing = sinc_kernel(21, math.pi / 4)
    assert ringing.min() < 0 and ringing.argmax() == 10 * 21 + 10


def test_gaussian_kernel_matches_formula_and_filter_preserves_constants() -> None:
    kernel = anisotropic_kernel(7, 2.0, 1.0, math.pi / 2)  # rotated by 90°: sigma 2 along rows
    offsets = torch.arange(7, dtype=torch.float64) - 3
    expected = torch.exp(-0.5 * ((offsets[:, None] / 2.0) ** 2 + offsets[None, :] ** 2))
    torch.testing.assert_close(kernel, expected / expected.sum())
    flat = torch.full((3, 8, 8), 0.25)
    torch.testing.assert_close(filter2d(flat, anisotropic_kernel(21, 3.0, 3.0, 0.0)), flat)


def test_forced_branches_are_recorded() -> None:
    hr = _astronaut(48)
    config = _quiet(
        stage1={"blur": {"prob": 1.0, "sinc_prob": 1.0},
                "resize": {"probs": {"up": 1.0, "down": 0.0, "keep": 0.0}, "scale": [1.0, 1.3], "modes": ["area"]},
                "noise": {"prob": 1.0, "gaussian_prob": 0.0, "gray_prob": 1.0, "poisson_scale": [0.5, 0.6]},
                "jpeg": {"prob": 1.0, "quality": [40, 42]}},
        stage2={"resize": {"probs": {"up": 0.0, "down": 1.0, "keep": 0.0}, "modes": ["bilinear"]},
                "noise": {"prob": 1.0, "gaussian_prob": 1.0, "gray_prob": 0.0, "gaussian_sigma": [3, 4]}},
        final={"sinc_prob": 1.0, "jpeg_first_prob": 1.0, "jpeg": {"prob": 1.0, "quality": [90, 90]},
               "modes": ["bicubic"]})
    degrade = RealESRGANDegradation(config)
    for seed in range(3):
        lr = degrade(hr, seed)
        s1, s2, final = degrade.last_params["stage1"], degrade.last_params["stage2"], degrade.last_params["final"]
        assert s1["blur"]["type"] == "sinc" and s2["blur"] is None
        assert s1["resize"]["direction"] == "up" and 1.0 <= s1["resize"]["factor"] <= 1.3
        assert s1["resize"]["size"][0] == int(48 * s1["resize"]["factor"]) and s1["resize"]["mode"] == "area"
        assert s1["noise"]["type"] == "poisson" and s1["noise"]["gray"] and 0.5 <= s1["noise"]["scale"] <= 0.6
        assert 40 <= s1["jpeg"]["quality"] <= 42 and s2["jpeg"] is None
        assert s2["resize"]["direction"] == "down" and 0.3 <= s2["resize"]["factor"] <= 1.0
        assert s2["resize"]["size"][0] == int(48 / 4 * s2["resize"]["factor"])
        assert s2["noise"] == {"type": "gaussian", "sigma": s2["noise"]["sigma"], "gray": False}
        assert 3 <= s2["noise"]["sigma"] <= 4
        assert final["order"] == "jpeg_first" and final["sinc"]["type"] == "sinc"
        assert final["jpeg"] == {"quality": 90} and final["mode"] == "bicubic" and lr.shape == (3, 12, 12)
    resize_first = RealESRGANDegradation(_quiet(final={"jpeg_first_prob": 0.0}))
    resize_first(hr, 0)
    assert resize_first.last_params["final"]["order"] == "resize_first"


def test_default_ranges_respected_over_many_seeds() -> None:
    hr = _astronaut(32)
    config = RealESRGANConfig()
    degrade = RealESRGANDegradation(config)
    for seed in range(12):
        _, params = degrade.degrade(hr, seed)
        for name, stage in (("stage1", config.stage1), ("stage2", config.stage2)):
            record = params[name]
            if record["blur"] is not None:
                assert record["blur"]["size"] in stage.blur.kernel_sizes
            low, high = stage.resize.scale
            assert low <= record["resize"]["factor"] <= high
            noise = record["noise"]
            key, rng = ("sigma", stage.noise.gaussian_sigma) if noise["type"] == "gaussian" else \
                ("scale", stage.noise.poisson_scale)
            assert rng[0] <= noise[key] <= rng[1]
            assert stage.jpeg.quality[0] <= record["jpeg"]["quality"] <= stage.jpeg.quality[1]
        if params["final"]["sinc"] is not None:
            assert math.pi / 3 - 1e-9 <= params["final"]["sinc"]["cutoff"] <= math.pi + 1e-9


@pytest.mark.parametrize("gray", [False, True])
def test_measured_gaussian_noise_matches_configured_sigma(gray: bool) -> None:
    hr = torch.full((3, 96, 96), 0.5)
    config = _quiet(scale=1, stage1={"noise": {"prob": 1.0, "gaussian_prob": 1.0, "gray_prob": float(gray),
                                               "gaussian_sigma": [12.0, 12.0]}})
    lr, params = RealESRGANDegradation(config).degrade(hr, 3)
    assert params["stage1"]["noise"] == {"type": "gaussian", "sigma": 12.0, "gray": gray}
    measured = ((lr - 0.5) * 255).std().item()
    assert abs(measured - 12.0) < 0.6  # 8-bit rounding adds ~0.3 / 12 in quadrature
    assert torch.equal(lr[0], lr[1]) == gray


def test_measured_poisson_noise_matches_scale() -> None:
    img = _astronaut(96)
    gen = torch.Generator().manual_seed(0)
    noisy = add_poisson_noise(img, 2.0, False, gen)
    inside = (img > 0.1) & (img < 0.9) & (noisy > 0) & (noisy < 1)
    # Var[scale * (poisson(v * 256) / 256 - v)] = scale² v / 256
    ratio = ((noisy - img)[inside] ** 2).mean() / (4.0 * img[inside].mean() / 256)
    assert 0.85 < ratio.item() < 1.15
    gray = add_poisson_noise(img, 2.0, True, gen) - img
    assert gray.abs().sum() > 0
    same = add_gaussian_noise(img, 0.0, False, gen)
    torch.testing.assert_close(same, img)


def test_jpeg_quality_matters_and_keeps_shape() -> None:
    img = _astronaut(64)
    low, high = jpeg(img, 10), jpeg(img, 95)
    assert low.shape == img.shape and (low - img).abs().mean() > (high - img).abs().mean()
    assert jpeg(img[:1], 50).shape == (1, 64, 64)
    with pytest.raises(ValueError):
        jpeg(torch.rand(2, 8, 8), 50)


# ----------------------------------------------------------------------------------------------------------------
# Configs

def test_recipe_yaml_equals_defaults() -> None:
    assert RealESRGANDegradation.from_yaml(RECIPE).config == RealESRGANConfig()


def test_partial_stage2_falls_back_to_stage2_defaults() -> None:
    config = validate(RealESRGANConfig, {"stage2": {"noise": {"gray_prob": 0.0}}})
    assert config.stage2.noise.gaussian_sigma == (1.0, 25.0) and config.stage2.blur.prob == 0.8


@pytest.mark.parametrize(("text", "pattern"), [
    ("stage2:\n  noise:\n    gaussian_sigma: [30, 1]\n", r"stage2\.noise\.gaussian_sigma: .*low 30\.0 > high 1\.0"),
    ("stage1:\n  blur:\n    sinc_prob: 1.5\n", r"stage1\.blur\.sinc_prob: .*less than or equal to 1"),
    ("stage1:\n  resize:\n    probs: {up: 0.5, down: 0.2, keep: 0.2}\n", r"stage1\.resize\.probs: .*sum to 1"),
    ("stage1:\n  blur:\n    kernel_sizes: [4, 7]\n", r"stage1\.blur\.kernel_sizes: .*odd"),
    ("final:\n  modes: [nearest]\n", r"final\.modes\.0: "),
    ("stage1:\n  bluur: {}\n", r"stage1\.bluur: unknown key \(allowed: blur, jpeg, noise, resize\)"),
    ("scale: 0\n", r"scale: "),
])
def test_bad_config_names_file_and_key(tmp_path: Path, text: str, pattern: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"bad\.yaml: " + pattern):
        RealESRGANDegradation.from_yaml(path)
    with pytest.raises(ConfigError, match=r"bad\.yaml: "):
        load_config(path, RealESRGANConfig)
