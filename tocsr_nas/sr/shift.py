"""The multi-step SR model's diffusion process: residual shifting (ResShift, Yue et al., NeurIPS 2023).

With ``x0`` the HR latent and ``y0`` the LR latent, the forward process over ``T = steps`` steps is

    ``x_t = x0 + eta_t (y0 - x0) + kappa sqrt(eta_t) eps``,   ``t = 1..T``,

with ResShift's schedule ``sqrt(eta_t) = sqrt(eta_1) b0^(((t-1)/(T-1))^power (T-1))`` rising from
``sqrt(eta_1) = min(0.04 / kappa, sqrt(0.001))`` to ``sqrt(eta_T) = 0.99``. So ``x_T`` is the LR latent plus
noise, and sampling starts there (``y0 + kappa sqrt(eta_T) eps``, ResShift's prior): training and sampling see
the same process.

The network sees ``x_t / sqrt(1 + kappa^2 eta_t)`` (unit variance, as ResShift scales latents) next to ``y0``.
That input is exactly a DDPM sample ``sqrt(abar) m + sqrt(1 - abar) eps`` of the shifted mean
``m = x0 + eta_t (y0 - x0)`` at ``abar = 1 / (1 + kappa^2 eta_t)``, so the UNet gets the DDPM timestep of that
``abar`` in its own noise schedule (its pretrained time embedding stays meaningful; with a small ``kappa`` the
steps share timesteps near 0 and the UNet tells them apart by its inputs). Its output ``out`` is read as
an x0 prediction with EDM's preconditioning (Karras et al., 2022) on the residual ``r = x0 - y0``, which the
process carries as ``x_t - y0 = s_t r + sigma_t eps`` (``s_t = 1 - eta_t``, ``sigma_t = kappa sqrt(eta_t)``):

    ``x0_hat = y0 + c_skip (x_t - y0) - c_out out``,
    ``c_skip = s_t sd^2 / (s_t^2 sd^2 + sigma_t^2)``, ``c_out = sd sigma_t / sqrt(s_t^2 sd^2 + sigma_t^2)``,

with ``sd = residual_std`` (the spread of ``r``). ``c_skip (x_t - y0)`` is the best linear estimate of ``r`` from
``x_t``, and ``c_out`` the spread of its error, so the net's target has unit scale at every step. As
``sigma_t / s_t -> 0`` this tends to ``(x_t - sigma_t out - eta_t y0) / s_t``, the pretrained epsilon-predictor's own x0 read-out; near
``t = T`` it is ``y0 - sd out``, a residual on the LR latent (as the one-step model reads its output). Training:
MSE between ``x0_hat`` and ``x0`` at ``t`` drawn uniformly (ResShift's objective).

Sampling (:func:`sample_latent`) is deterministic (DDIM with ``eta = 0`` on the same Gaussian marginals): from
``x0_hat`` the implied noise ``eps_hat = (x_t - x0_hat - eta_t (y0 - x0_hat)) / (kappa sqrt(eta_t))`` moves
``x_t`` to ``x_s = x0_hat + eta_s (y0 - x0_hat) + kappa sqrt(eta_s) eps_hat``; the last step returns ``x0_hat``.
Only the marginals enter, so any subset of the ``T`` trained steps can be sampled, and one seeded noise tensor
decides the output (tiles of an image stay consistent).
"""
from __future__ import annotations

import math

import pydantic
import torch
from diffusers import DDPMScheduler

from .adapt import SRUNet

SQRT_ETA_END = 0.99  # ResShift's sqrt(eta_T)
MIN_NOISE = 0.04  # ResShift's min_noise_level: sqrt(eta_1) = min(MIN_NOISE / kappa, MIN_NOISE, sqrt(0.001))


class ShiftConfig(pydantic.BaseModel, extra="forbid", frozen=True):
    """The residual-shifting schedule (``steps`` T, noise scale ``kappa``, ``power`` p) and the read-out's ``residual_std``."""

    # defaults: experiments/recipes/sr_x4_diffusion.yaml's (ResShift: 15 or 4 steps, kappa 2; a small kappa keeps
    # the noise an undertrained CPU model must remove small, see benchmarks/results/sr_quality_diffusion.md)
    steps: int = pydantic.Field(4, ge=2, le=1000)
    kappa: float = pydantic.Field(0.05, gt=0, le=100)
    power: float = pydantic.Field(0.3, gt=0, le=10)
    residual_std: float = pydantic.Field(0.2, gt=0, le=100)  # spread of HR - LR latent (EDM's sigma_data)


def etas(config: ShiftConfig) -> torch.Tensor:
    """``eta_1..eta_T`` (float64, increasing)."""
    sqrt_eta_1 = min(MIN_NOISE / config.kappa, MIN_NOISE, math.sqrt(0.001))
    steps = config.steps
    b0 = math.exp(math.log(SQRT_ETA_END / sqrt_eta_1) / (steps - 1))
    exponents = torch.linspace(0, 1, steps, dtype=torch.float64) ** config.power * (steps - 1)
    return (sqrt_eta_1 * b0 ** exponents) ** 2


def unet_timesteps(config: ShiftConfig, scheduler: DDPMScheduler) -> torch.Tensor:
    """The DDPM timestep (long, one per shift step) whose ``abar`` is closest to ``1 / (1 + kappa^2 eta_t)``."""
    target = 1 / (1 + config.kappa ** 2 * etas(config))
    log_abar = scheduler.alphas_cumprod.to(torch.float64).log()
    return (log_abar[None] - target.log()[:, None]).abs().argmin(dim=1)


def _at(values: torch.Tensor, index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(like.device, like.dtype)[index].reshape(-1, *([1] * (like.dim() - 1)))


def add_shift_noise(config: ShiftConfig, hr_latent: torch.Tensor, lr_latent: torch.Tensor, noise: torch.Tensor,
                    index: torch.Tensor) -> torch.Tensor:
    """``x_t`` of the forward process at 0-based step ``index`` (one per sample: ``t = index + 1``)."""
    eta = _at(etas(config), index, hr_latent)
    return hr_latent + eta * (lr_latent - hr_latent) + config.kappa * eta.sqrt() * noise


def predict_hr_latent(net: SRUNet, config: ShiftConfig, scheduler: DDPMScheduler, sample: torch.Tensor,
                      lr_latent: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x0_hat``: the net's output at step ``index`` read as an HR latent (see the module doc; differentiable)."""
    eta = _at(etas(config), index, sample)
    shift, sigma, sd = 1 - eta, config.kappa * eta.sqrt(), config.residual_std
    spread = (shift ** 2 * sd ** 2 + sigma ** 2).sqrt()
    timesteps = unet_timesteps(config, scheduler).to(sample.device)[index]
    out = net(sample / (1 + sigma ** 2).sqrt(), lr_latent, timesteps)
    return lr_latent + shift * sd ** 2 / spread ** 2 * (sample - lr_latent) - sd * sigma / spread * out


def sample_indices(config: ShiftConfig, steps: int) -> list[int]:
    """The 0-based steps a ``steps``-step sampler visits, from ``T - 1`` down to 0 (all ``T`` when ``steps >= T``)."""
    count = max(1, min(steps, config.steps))
    if count == 1:
        return [config.steps - 1]
    return sorted({round(i * (config.steps - 1) / (count - 1)) for i in range(count)}, reverse=True)


@torch.no_grad()
def sample_latent(net: SRUNet, config: ShiftConfig, scheduler: DDPMScheduler, lr_latent: torch.Tensor,
                  steps: int, noise: torch.Tensor) -> torch.Tensor:
    """The HR latent after ``steps`` deterministic steps from ``y0 + kappa sqrt(eta_T) noise`` (see the module doc)."""
    eta = etas(config).to(lr_latent.device, lr_latent.dtype)
    indices = sample_indices(config, steps)

    def predict(latents: torch.Tensor, step: int) -> torch.Tensor:
        index = torch.full((len(lr_latent),), step, dtype=torch.long, device=lr_latent.device)
        return predict_hr_latent(net, config, scheduler, latents, lr_latent, index)

    latents = lr_latent + config.kappa * eta[-1].sqrt() * noise
    for step, nxt in zip(indices, indices[1:]):
        hr = predict(latents, step)
        implied = (latents - hr - eta[step] * (lr_latent - hr)) / (config.kappa * eta[step].sqrt())
        latents = hr + eta[nxt] * (lr_latent - hr) + config.kappa * eta[nxt].sqrt() * implied
    return predict(latents, indices[-1])

__all__ = ["ShiftConfig", "add_shift_noise", "etas", "predict_hr_latent", "sample_indices", "sample_latent",
           "unet_timesteps"]
