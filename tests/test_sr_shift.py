"""The multi-step SR model's residual-shifting process: training and sampling are one process; bad values refused."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from diffusers import DDPMScheduler
from PIL import Image

from tocsr_nas.sr.adapt import adapt_unet
from tocsr_nas.sr.model import SRModel, load_sr_model, save_sr_model
from tocsr_nas.sr.shift import (
    ShiftConfig,
    add_shift_noise,
    etas,
    predict_hr_latent,
    sample_indices,
    sample_latent,
    unet_timesteps,
)
from tocsr_nas.vae import build_vae

from .badinput import assert_refused
from .test_sr import MICRO_VAE

RECIPES = Path(__file__).resolve().parents[1] / "experiments" / "recipes"
SCHEDULER = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)


def test_schedule_runs_from_the_hr_to_the_lr_latent():
    config = ShiftConfig(steps=15, kappa=2.0)
    eta = etas(config)
    assert torch.all(eta[1:] > eta[:-1])
    assert math.isclose(float(eta[0]), 0.02 ** 2) and math.isclose(float(eta[-1]), 0.99 ** 2)  # ResShift's ends
    timesteps = unet_timesteps(config, SCHEDULER)
    assert torch.all(timesteps[1:] >= timesteps[:-1]) and 0 <= int(timesteps[0]) and int(timesteps[-1]) < 1000
    abar = SCHEDULER.alphas_cumprod[timesteps].double()  # the matched DDPM noise level of each step
    assert torch.allclose(abar, 1 / (1 + 4.0 * eta), rtol=0.05)
    assert sample_indices(config, 15) == list(range(14, -1, -1))
    assert sample_indices(config, 4) == [14, 9, 5, 0] and sample_indices(config, 1) == [14]


class OracleNet(torch.nn.Module):
    """Knows the HR latent: outputs what makes ``x0_hat`` exact, and records every ``x_t`` it sees."""

    def __init__(self, config: ShiftConfig, hr: torch.Tensor) -> None:
        super().__init__()
        self.config, self.hr, self.seen = config, hr, []
        self.eta = {int(t): float(e) for t, e in zip(unet_timesteps(config, SCHEDULER), etas(config))}

    def forward(self, sample: torch.Tensor, lr_latent: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        eta, sd = self.eta[int(timestep[0])], self.config.residual_std
        sigma = self.config.kappa * eta ** 0.5
        x_t = sample * (1 + sigma ** 2) ** 0.5
        self.seen.append(x_t)
        var = (1 - eta) ** 2 * sd ** 2 + sigma ** 2
        skip = lr_latent + (1 - eta) * sd ** 2 / var * (x_t - lr_latent)
        return (skip - self.hr) / (sd * sigma / var ** 0.5)


def test_sampler_walks_the_training_process():
    # Sampling starts at y0 + kappa sqrt(eta_T) noise: training's x_T with x0 replaced by y0 (ResShift's prior; they
    # differ by (1 - eta_T)(x0 - y0), eta_T = 0.98). With an exact x0 predictor, every later state the sampler visits
    # is then exactly the training process's x_t for the noise its start implies, and the result is the HR latent.
    config = ShiftConfig(steps=8, kappa=1.5)
    assert len(set(unet_timesteps(config, SCHEDULER).tolist())) == config.steps  # the oracle's lookup is unique
    generator = torch.Generator().manual_seed(0)
    hr, lr, noise = (torch.randn(2, 4, 6, 6, generator=generator, dtype=torch.float64) for _ in range(3))
    for steps in (8, 3):
        net = OracleNet(config, hr)
        out = sample_latent(net, config, SCHEDULER, lr, steps, noise)
        assert torch.allclose(out, hr, atol=1e-9)
        indices = sample_indices(config, steps)
        start = torch.full((2,), config.steps - 1)
        assert torch.allclose(net.seen[0], add_shift_noise(config, lr, lr, noise, start), atol=1e-12)
        eta_t = float(etas(config)[-1])
        implied = (net.seen[0] - hr - eta_t * (lr - hr)) / (config.kappa * eta_t ** 0.5)
        assert torch.allclose(implied, noise + (1 - eta_t) * (lr - hr) / (config.kappa * eta_t ** 0.5), atol=1e-9)
        for step, seen in zip(indices[1:], net.seen[1:]):
            expected = add_shift_noise(config, hr, lr, implied, torch.full((2,), step))
            assert torch.allclose(seen, expected, atol=1e-9)


def test_predicted_latent_is_read_out_with_edm_preconditioning():
    config = ShiftConfig(steps=5, kappa=0.5, residual_std=0.3)
    calls = []

    def net(sample, lr_latent, timestep):
        calls.append((sample, timestep))
        return torch.ones_like(sample)

    x_t, lr = torch.randn(3, 4, 2, 2, dtype=torch.float64), torch.randn(3, 4, 2, 2, dtype=torch.float64)
    index = torch.tensor([0, 2, 4])
    out = predict_hr_latent(net, config, SCHEDULER, x_t, lr, index)
    eta = etas(config)[index].reshape(-1, 1, 1, 1)
    sigma, var = 0.5 * eta.sqrt(), (1 - eta) ** 2 * 0.09 + 0.25 * eta
    assert torch.allclose(out, lr + (1 - eta) * 0.09 / var * (x_t - lr) - 0.3 * sigma / var.sqrt())
    assert torch.allclose(calls[0][0], x_t / (1 + sigma ** 2).sqrt())
    assert torch.equal(calls[0][1], unet_timesteps(config, SCHEDULER)[index])


def _diffusion_folder(micro_teacher, tmp_path: Path, shift: ShiftConfig | None) -> Path:
    net = adapt_unet(micro_teacher.unet, micro_teacher.context(1)[0].detach())
    torch.manual_seed(0)
    model = SRModel(net=net.eval(), vae=build_vae(MICRO_VAE).eval(), scheduler=SCHEDULER, kind="sr-diffusion",
                    scale=4, shift=shift)
    return save_sr_model(model, tmp_path / ("new" if shift else "old"))


def test_folder_records_the_schedule_and_an_old_folder_is_refused(micro_teacher, tmp_path, capsys):
    new = load_sr_model(_diffusion_folder(micro_teacher, tmp_path, ShiftConfig(steps=4, kappa=0.3)))
    assert new.shift == ShiftConfig(steps=4, kappa=0.3)
    old = _diffusion_folder(micro_teacher, tmp_path, None)  # as written before the shift process
    Image.new("RGB", (8, 8), (120, 60, 30)).save(tmp_path / "lr.png")
    assert_refused(["upscale", str(tmp_path / "lr.png"), "-o", str(tmp_path / "out.png"), "--model", str(old)],
                   tmp_path, capsys, match="predates the residual-shifting process")
    recipe = yaml.safe_load((RECIPES / "sr_onestep.yaml").read_text())
    assert recipe["loss"]["teacher_l2"] > 0
    assert_refused(["train-sr", "onestep", "--config", str(RECIPES / "sr_onestep.yaml"), "--init", str(old),
                    "--out", str(tmp_path / "one")], tmp_path, capsys, match="teacher targets need")


@pytest.mark.parametrize(("change", "match"), [
    ({"shift": {"steps": 1}}, "shift.steps"),
    ({"shift": {"kappa": 0}}, "shift.kappa"),
    ({"shift": {"power": -1}}, "shift.power"),
    ({"shift": {"stepz": 4}}, "stepz: unknown key"),
    ({"start_timestep": 250}, "start_timestep: unknown key"),  # the former LR-start DDPM process
])
def test_bad_shift_values_are_refused(change, match, tmp_path, capsys):
    recipe = {**yaml.safe_load((RECIPES / "sr_x4_diffusion.yaml").read_text()), **change}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(recipe))
    assert_refused(["train-sr", "adapt", "--config", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "run")],
                   tmp_path, capsys, match=match)
