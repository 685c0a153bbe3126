"""benchmarks/sr_quality.py: the compact vs teacher-sized claim table, tiled and extrapolated latency, bad options.

Micro models (untrained, a micro VAE) in a tmp folder: the figures are meaningless, the bookkeeping is checked.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from diffusers import DDPMScheduler
from PIL import Image

from tocsr_nas.sr.adapt import adapt_unet
from tocsr_nas.sr.model import SRModel, load_sr_model, save_sr_model
from tocsr_nas.sr.shift import sample_indices
from tocsr_nas.supernet import Supernet
from tocsr_nas.vae import build_vae

from .badinput import assert_refused
from .conftest import MICRO_TEACHER, load_benchmark

MICRO_VAE = dict(in_channels=3, out_channels=3, latent_channels=16, down_block_types=["DownEncoderBlock2D"] * 3,
                 up_block_types=["UpDecoderBlock2D"] * 3, block_out_channels=[8, 8, 16], layers_per_block=1,
                 norm_num_groups=4, mid_block_add_attention=False, sample_size=32)


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("sr_quality")


@pytest.fixture(scope="module")
def models(micro_teacher, micro_space, tmp_path_factory) -> dict[str, Path]:
    """Compact and teacher-sized one-step folders (same VAE, schedule and output), a scale-2 one, and HR images."""
    root = tmp_path_factory.mktemp("sr_quality")
    torch.manual_seed(0)
    vae = build_vae(MICRO_VAE).eval()
    context = micro_teacher.context(1)[0].detach()
    compact = Supernet(micro_teacher, micro_space).extract(micro_space.parse("down:R=slim(width=0.5),A=I;mid:R=T,A=T;up:R=I,A=T"))

    def save(unet, name: str, scale: int = 4, codec=vae) -> Path:
        model = SRModel(net=adapt_unet(unet, context).eval(), vae=codec, scheduler=DDPMScheduler(), kind="sr-onestep",
                        scale=scale, timestep=200, output="residual")
        return save_sr_model(model, root / name)

    data = root / "hr"
    data.mkdir()
    for i, top in enumerate((60, 140)):
        photo = skimage.data.astronaut()[top:top + 48, 180:180 + 48]
        Image.fromarray(np.ascontiguousarray(photo)).save(data / f"p{i}.png")
    return {"compact": save(compact, "compact"), "teacher": save(micro_teacher.unet, "teacher"),
            "scale2": save(micro_teacher.unet, "scale2", scale=2), "data": data, "root": root,
            "othervae": save(micro_teacher.unet, "othervae", codec=build_vae(MICRO_VAE).eval())}


def test_extrapolate_is_fixed_part_plus_steps_times_the_per_step_time(bench):
    assert bench.extrapolate(3.0, 5.0, 3, 50) == {"per_step_s": 1.0, "fixed_s": 2.0, "end_to_end_s": 52.0}


def test_teacher_sized_multi_step_model_takes_every_step_asked_for(bench, models):
    like = load_sr_model(models["compact"])
    multi = bench.teacher_sized(like, str(MICRO_TEACHER), kind="sr-diffusion", steps=7)
    assert multi.kind == "sr-diffusion" and len(sample_indices(multi.shift, 7)) == 7
    assert multi.vae is like.vae and bench.params(multi.net) > bench.params(like.net)


def test_claim_table_puts_differences_next_to_ratios(bench, models, tmp_path):
    out = tmp_path / "results"
    assert bench.main(["--onestep", str(models["compact"]), "--onestep-teacher", str(models["teacher"]),
                       "--data", str(models["data"]), "--output-modes", "direct", "--skip-latency", "--latency-size", "8",
                       "--out", str(out),
                       "--name", "claim"]) == 0
    data = json.loads((out / "claim.json").read_text())
    mean = {r["method"]: r for r in data["summary"]}
    claim = data["claim"]
    assert [r["model"] for r in claim["rows"]] == ["bicubic", "onestep-compact", "onestep-teacher-sized"]
    assert claim["rows"][1]["hr PSNR-Y"] == mean["onestep-compact/residual"]["psnr_y"]
    assert claim["rows"][0]["hr SSIM-Y"] == mean["bicubic"]["ssim_y"]
    difference = claim["differences_compact_minus_teacher_sized"]["hr"]
    assert difference["psnr_y"] == pytest.approx(mean["onestep-compact/residual"]["psnr_y"] - mean["onestep-teacher-sized"]["psnr_y"])
    ratios = claim["ratios_compact_over_teacher_sized"]
    assert ratios["params"] == data["params"]["onestep-compact"] / data["params"]["onestep-teacher-sized"] < 1
    assert ratios["unet_gmacs"] == data["gmacs"]["onestep-compact"]["unet"] / data["gmacs"]["teacher-sized"]["unet"] < 1
    markdown = (out / "claim.md").read_text()
    assert "## Claim: compact vs teacher-sized one-step" in markdown and "compact / teacher-sized" in markdown
    assert f"{difference['psnr_y']:+.2f} dB" in markdown and "x fewer" in markdown
    assert data["machine"]["torch_threads"] == 1 and data["gmacs_output_px"] == 32


def test_tiled_latency_with_extrapolated_multi_step_rows(bench, models, tmp_path):
    out = tmp_path / "results"
    assert bench.main(["--onestep", str(models["compact"]), "--teacher", str(MICRO_TEACHER), "--skip-quality",
                       "--latency-size", "12", "--tile", "32", "--latency-steps", "5", "--measured-steps", "2",
                       "--latency-repeats", "1", "--latency-warmup", "0", "--cost-size", "4", "--out", str(out),
                       "--name", "lat"]) == 0
    data = json.loads((out / "lat.json").read_text())
    assert data["latency_tiles"] == {"12": 32} and data["gmacs_output_px"] == 16  # 12 px LR -> 48 px out: tiled
    for rows in data["latency"].values():
        multi = rows["diffusion-teacher-sized-5step"]
        assert multi["extrapolated"] and multi["measured_steps"] == [1, 2]
        assert multi["end_to_end_s"] == pytest.approx(multi["fixed_s"] + 5 * multi["per_step_s"])
        assert not rows["onestep-compact"].get("extrapolated") and rows["onestep-compact"]["end_to_end_s"] > 0
    markdown = (out / "lat.md").read_text()
    assert "12x12 -> 48x48, 32-px tiles" in markdown and "after 0 warm-up call(s)" in markdown
    assert "| diffusion-teacher-sized-5step | extrapolated |" in markdown and "not measurements" in markdown


@pytest.mark.parametrize("extra, match", [
    (["--onestep-teacher", "{root}/missing"], "missing"),
    (["--onestep-teacher", "{scale2}"], "scale 2 differs from the compact model's 4"),
    (["--onestep-teacher", "{data}"], "hr"),
    (["--onestep-teacher", "{othervae}"], "its VAE differs from the compact model's"),
    (["--measured-steps", "1"], "--measured-steps"),
    (["--measured-steps", "50"], "--measured-steps"),
    (["--latency-size", "0"], "--latency-size"),
    (["--cost-size", "0"], "--cost-size"),
    (["--data", "{root}/nowhere"], "image folder not found"),
])
def test_bad_options_are_refused_in_one_line(bench, models, tmp_path, capsys, extra, match):
    argv = ["--onestep", str(models["compact"]), "--out", str(tmp_path / "results"), "--skip-latency"]
    argv += [a.format(**{k: str(v) for k, v in models.items()}) for a in extra]
    assert_refused(argv, models["root"], capsys, match=match, run=bench.main)
    assert not (tmp_path / "results").exists()
