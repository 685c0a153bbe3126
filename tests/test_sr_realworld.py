"""Evaluation on degraded inputs: fixed, reproducible LR sets per (degradation, seed), the bicubic default, refusals."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from tocsr_nas.cli import main
from tocsr_nas.data.images import load_image
from tocsr_nas.degradations import BicubicDegradation, make_degradation
from tocsr_nas.errors import ConfigError
from tocsr_nas.sr.evaluate import eval_degradation, evaluate_files, lr_generator, reference_methods
from tocsr_nas.sr.model import save_sr_model

from .badinput import assert_refused
from .conftest import load_benchmark
from .test_sr_extras import micro_model  # noqa: F401 (the tiny one-step model fixture)

RECIPE = Path(__file__).resolve().parents[1] / "experiments" / "recipes" / "degradation_realesrgan.yaml"


def _photos(folder: Path, names: tuple[str, ...] = ("a", "b", "c"), side: int = 48) -> list[Path]:
    folder.mkdir()
    image = skimage.data.astronaut()
    paths = []
    for i, name in enumerate(names):
        Image.fromarray(image[60 * i:60 * i + side, 100:100 + side]).save(folder / f"{name}.png")
        paths.append(folder / f"{name}.png")
    return paths


def _inputs(files: list[Path], **kwargs) -> dict[str, torch.Tensor]:
    """The LR input of every file, as evaluate_files made it."""
    seen: dict[str, torch.Tensor] = {}
    evaluate_files(reference_methods(4, None), files, 4, on_outputs=lambda path, lr, hr, out: seen.update(
        {path.name: lr}), **kwargs)
    return seen


def test_same_seed_gives_identical_inputs_whatever_the_order_and_another_seed_differs(tmp_path):
    files = _photos(tmp_path / "data")
    degradation, _ = eval_degradation(str(RECIPE), 4)
    first = _inputs(files, degradation=degradation, degradation_seed=3)
    again = _inputs(files[::-1], degradation=make_degradation(RECIPE), degradation_seed=3)
    other = _inputs(files, degradation=degradation, degradation_seed=4)
    assert first.keys() == again.keys() == {"a.png", "b.png", "c.png"}
    for name, lr in first.items():
        assert lr.shape == (3, 12, 12) and torch.equal(lr, again[name])
        assert not torch.equal(lr, other[name])
    assert torch.equal(lr_generator(3, "a.png").get_state(), lr_generator(3, "a.png").get_state())
    assert not torch.equal(lr_generator(3, "a.png").get_state(), lr_generator(3, "b.png").get_state())


def test_bicubic_default_is_unchanged(tmp_path):
    files = _photos(tmp_path / "data", names=("a", "b"))
    default = _inputs(files)
    named = _inputs(files, degradation=eval_degradation("bicubic", 4)[0], degradation_seed=9)
    for path in files:
        expected = BicubicDegradation(4)(load_image(path))
        assert torch.equal(default[path.name], expected) and torch.equal(named[path.name], expected)


def test_degraded_inputs_are_harder_than_bicubic(tmp_path):
    files = _photos(tmp_path / "data", side=96)
    clean = evaluate_files(reference_methods(4, None), files, 4)
    real = evaluate_files(reference_methods(4, None), files, 4, degradation=eval_degradation("realesrgan", 4)[0])
    assert np.mean([r["psnr_y"] for r in real]) < np.mean([r["psnr_y"] for r in clean]) - 0.5


def test_eval_degradation_scales_and_refusals(tmp_path):
    assert eval_degradation("realesrgan", 2)[0].scale == 2  # a name takes the evaluation's scale
    degradation, config = eval_degradation(RECIPE, 4)
    assert config["name"] == "realesrgan" and config["stage1"]["jpeg"]["quality"] == [30, 95]
    with pytest.raises(ConfigError, match="degradation has scale 4, the evaluation 2"):
        eval_degradation(str(RECIPE), 2)
    with pytest.raises(ConfigError, match="unknown degradation 'blurry'"):
        eval_degradation("blurry", 4)
    with pytest.raises(ConfigError, match="degradation has scale 4"):
        evaluate_files({}, [], 2, degradation=degradation)


@pytest.fixture()
def world(tmp_path: Path) -> Path:
    _photos(tmp_path / "data", names=("a",))
    (tmp_path / "typo.yaml").write_text("name: realesrgan\nstage1: {blurr: {prob: 1.0}}\n")
    (tmp_path / "x2.yaml").write_text("name: realesrgan\nscale: 2\n")
    (tmp_path / "broken.yaml").write_text("name: [realesrgan\n")
    (tmp_path / "model").mkdir()
    return tmp_path


@pytest.mark.parametrize(("option", "match"), [
    ("blurry", "unknown degradation 'blurry'"),
    ("{w}/nothere.yaml", "nothere.yaml"),
    ("{w}/typo.yaml", "blurr"),
    ("{w}/broken.yaml", "broken.yaml"),
    ("{w}/x2.yaml", "degradation has scale 2, the evaluation 4"),
])
def test_evaluate_sr_refuses_bad_degradations(world, capsys, option, match):
    argv = ["evaluate-sr", "--model", str(world / "model"), "--data", str(world / "data"), "--out",
            str(world / "eval"), "--degradation", option.format(w=world)]
    assert_refused(argv, world, capsys, match=match)


def test_evaluate_sr_refuses_a_negative_degradation_seed(world, capsys):
    argv = ["evaluate-sr", "--model", str(world / "model"), "--data", str(world / "data"), "--out",
            str(world / "eval"), "--degradation", "realesrgan", "--degradation-seed", "-1"]
    assert_refused(argv, world, capsys, match="--degradation-seed")


def test_evaluate_sr_reports_the_degradation_and_seed(micro_model, tmp_path):  # noqa: F811
    model_dir = save_sr_model(micro_model, tmp_path / "model")
    _photos(tmp_path / "data", names=("a", "b"))
    results = {}
    for seed in (0, 0, 1):
        out = tmp_path / f"eval{len(results)}"
        argv = ["evaluate-sr", "--model", f"one={model_dir}", "--data", str(tmp_path / "data"), "--out", str(out),
                "--no-latency", "--degradation", str(RECIPE), "--degradation-seed", str(seed)]
        assert main(argv) == 0
        results[out.name] = json.loads((out / "results.json").read_text())
        assert f"degradation `{RECIPE}`, seed {seed}" in (out / "summary.md").read_text()
    inputs = results["eval0"]["inputs"]
    assert inputs["seed"] == 0 and inputs["config"]["name"] == "realesrgan" and inputs["config"]["scale"] == 4
    psnr = {name: [row["psnr_y"] for row in r["summary"]] for name, r in results.items()}
    assert psnr["eval0"] == psnr["eval1"] and psnr["eval0"] != psnr["eval2"]


def test_benchmark_detail_ratio_tells_blur_from_noise():
    bench = load_benchmark("sr_realworld")
    hr = torch.from_numpy(skimage.data.astronaut()[:64, :64]).permute(2, 0, 1).float() / 255
    blurred = torch.nn.functional.avg_pool2d(hr[None], 5, 1, 2, count_include_pad=False)[0]
    noisy = (hr + 0.05 * torch.randn(hr.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert bench.gradient_ratio(hr, hr, 4) == pytest.approx(1.0)
    assert bench.gradient_ratio(blurred, hr, 4) < 0.9 < 1.1 < bench.gradient_ratio(noisy, hr, 4)


def test_benchmark_refuses_a_missing_clean_folder_before_any_work(world, capsys, monkeypatch):
    """The folders are listed before anything is evaluated: a typo in the last one is not found after hours."""
    bench = load_benchmark("sr_realworld")

    def no_work(*args, **kwargs):
        raise AssertionError("evaluated before every folder was checked")

    monkeypatch.setattr(bench, "evaluate_files", no_work)
    argv = ["--model", str(world / "model"), "--degraded", str(world / "data"), "--clean", str(world / "nowhere"),
            "--out", str(world / "results")]
    assert_refused(argv, world, capsys, match="nowhere", run=bench.main)
