"""The ``distillation`` evaluator: how closely a student arch reproduces the teacher's denoiser.

A fixed validation set of noisy latents (real-image latents + seeded noise at seeded timesteps, with the teacher's
context) is built once, and the teacher's outputs on it are computed once. An arch is scored by activating it in
the supernet (whose candidates carry the distilled surrogate weights) and comparing its outputs with the cached
teacher outputs: ``mse`` and ``loss`` = weighted mse / weighted variance of the teacher outputs (the *relative*
error; 0 = the teacher, 1 = as bad as predicting the mean). ``budget`` = how many validation batches to use
(default all). Outputs of top-level UNet blocks that the previous arch computed with the same upstream choices are
reused (:mod:`evaluators.prefix_memo`; the scores are bit for bit those of a full forward, and the supernet's weights
are taken as fixed for the evaluator's life, as the cached baseline already assumes).

Options (``evaluators: [{name: distillation, options: {...}}]``). The default is the original evaluator's
epsilon-space error at uniform timesteps, normalised by the all-identity arch's (``baseline: identity``), so that
``eps`` reads as a fraction of the empty UNet's error and the empty UNet never satisfies an ``eps < 1``; the
original evaluator (``baseline: none``) keeps its fingerprint, so its search folders keep their provenance, and
any other options change the fingerprint:

* ``prediction``: ``epsilon`` (default), ``x0`` or ``v``: the space both networks' noise predictions are converted
  to before comparing (``x0 = (x_t - sqrt(1-a) eps) / sqrt(a)``, ``v = sqrt(a) eps - sqrt(1-a) x0``). SR starts
  from a lightly noised LR latent, where predicting the noise is hard and an x0 error is what the output sees.
* ``timesteps``: ``uniform`` (default, the whole schedule), ``[lo, hi]`` (uniform in that range) or ``focused``
  (rounded Gaussian around ``center`` with standard deviation ``width``, clipped to the schedule): the validation
  latents are re-noised at these timesteps (same clean latents, noise and contexts).
* ``snr_weighting``: ``none`` (default) or ``min-snr`` (Hang et al. 2023: each sample's error weighted by
  ``min(SNR, snr_gamma)`` in x0 space, i.e. divided by SNR for epsilon and by SNR + 1 for v).
* ``baseline``: ``identity`` (default; ``none`` when a decision of the space has no identity op) or ``none``:
  with ``identity``, ``loss`` becomes the raw relative loss divided by that of the arch whose every block is
  ``identity`` (1.0 = no better than the empty UNet), reported as ``raw_loss`` and ``baseline_loss`` next to it.
* ``reuse_prefix``: ``true`` (default) or ``false``: keep the prefix memo's block outputs (one per top-level block
  and validation batch, about one forward's activations per batch). Turn it off when they do not fit beside the
  UNet on a small GPU; the scores are the same either way, so it is not part of the fingerprint.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
from typing import Any

import torch
from diffusers import DDPMScheduler

from tocsr_nas.arch import Arch
from tocsr_nas.device import autocast
from tocsr_nas.errors import ConfigError
from tocsr_nas.profiling.cost_table import space_fingerprint
from tocsr_nas.supernet import Supernet
from tocsr_nas.teachers import Teacher

from .base import Evaluator, register_evaluator
from .context import EvaluationContext
from .prefix_memo import PrefixMemo

PREDICTIONS = ("epsilon", "x0", "v")
TIMESTEPS = ("uniform", "focused", "[lo, hi]")
SNR_WEIGHTINGS = ("none", "min-snr")
BASELINES = ("none", "identity")


@dataclasses.dataclass
class ValidationSet:
    """Fixed inputs ``(noisy, timesteps, context)`` and the teacher's outputs on them.

    ``latents`` and ``noise`` (the clean latents and the noise they were noised with) and ``alphas_cumprod`` (the
    schedule) let an evaluator re-noise the same latents at other timesteps and convert predictions."""

    noisy: torch.Tensor
    timesteps: torch.Tensor
    context: torch.Tensor
    target: torch.Tensor
    batch_size: int
    seed: int
    dtype: torch.dtype = torch.float32  # the autocast dtype of the networks scored on it
    latents: torch.Tensor | None = None
    noise: torch.Tensor | None = None
    alphas_cumprod: torch.Tensor | None = None

    @property
    def device(self) -> torch.device:
        return self.noisy.device

    @classmethod
    @torch.no_grad()
    def build(cls, teacher: Teacher, latents: torch.Tensor, *, batch_size: int = 8, seed: int = 0,
              scheduler: DDPMScheduler | None = None, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32, timesteps: torch.Tensor | None = None) -> ValidationSet:
        """Noise ``latents`` (N, C, H, W) at uniformly drawn timesteps (or the given ``timesteps``) and record the
        teacher's outputs.

        The set lives on ``device`` (the teacher's UNet is moved there) and the teacher runs under autocast
        in ``dtype``."""
        if latents.dim() != 4 or latents.shape[1] != teacher.latent_channels:
            raise ConfigError(f"validation latents must be (N, {teacher.latent_channels}, H, W), got {tuple(latents.shape)}")
        scheduler = scheduler or DDPMScheduler(num_train_timesteps=1000)
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(latents.shape, generator=generator)
        drawn = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents),), generator=generator)
        timesteps = drawn if timesteps is None else timesteps.to(torch.long).cpu()
        noisy = scheduler.add_noise(latents, noise, timesteps)
        context = teacher.context(len(latents), generator).detach().clone()
        device = torch.device(device)
        noisy, timesteps, context = noisy.to(device), timesteps.to(device), context.to(device)
        unet = teacher.unet.eval().to(device)
        with autocast(device, dtype):
            target = torch.cat([unet(noisy[i:i + batch_size], timesteps[i:i + batch_size],
                                     encoder_hidden_states=context[i:i + batch_size]).sample.float()
                                for i in range(0, len(latents), batch_size)])
        return cls(noisy, timesteps, context, target, batch_size, seed, dtype, latents.to(device), noise.to(device),
                   scheduler.alphas_cumprod.to(device))

    @property
    def num_batches(self) -> int:
        return -(-len(self.noisy) // self.batch_size)


@dataclasses.dataclass(frozen=True)
class FidelityOptions:
    """The distillation evaluator's options (see the module doc); ``default()`` is the original evaluator."""

    prediction: str = "epsilon"
    timesteps: str | tuple[int, int] = "uniform"
    center: int = 250
    width: float = 50.0
    snr_weighting: str = "none"
    snr_gamma: float = 5.0
    baseline: str = "identity"

    @classmethod
    def parse(cls, options: dict[str, Any], num_timesteps: int) -> FidelityOptions:
        """Validated options (a one-line :class:`ConfigError` naming the key and the allowed values)."""
        allowed = {f.name for f in dataclasses.fields(cls)}
        for key in options:
            if key not in allowed:
                raise ConfigError(f"unknown option '{key}'", key="evaluators.distillation.options", allowed=allowed)
        choices = {"prediction": PREDICTIONS, "snr_weighting": SNR_WEIGHTINGS, "baseline": BASELINES}
        for key, values in choices.items():
            if key in options and options[key] not in values:
                raise ConfigError(f"'{options[key]}' is not allowed", key=f"evaluators.distillation.{key}",
                                  allowed=values)
        parsed = dict(options)
        spec = options.get("timesteps", "uniform")
        last = num_timesteps - 1
        if isinstance(spec, (list, tuple)):
            if not (len(spec) == 2 and all(isinstance(t, int) for t in spec) and 0 <= spec[0] <= spec[1] <= last):
                raise ConfigError(f"bad range {spec}", key="evaluators.distillation.timesteps",
                                  allowed=f"uniform, focused, [lo, hi] with 0 <= lo <= hi <= {last}")
            parsed["timesteps"] = (int(spec[0]), int(spec[1]))
        elif spec not in ("uniform", "focused"):
            raise ConfigError(f"'{spec}' is not allowed", key="evaluators.distillation.timesteps",
                              allowed=f"uniform, focused, [lo, hi] with 0 <= lo <= hi <= {last}")
        if not (isinstance(options.get("center", 0), int) and 0 <= options.get("center", 0) <= last):
            raise ConfigError(f"center {options['center']} out of range", key="evaluators.distillation.center",
                              allowed=f"0..{last}")
        for key in ("width", "snr_gamma"):
            value = options.get(key, 1.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{value!r} must be a positive number", key=f"evaluators.distillation.{key}")
        return cls(**parsed)

    def describe(self) -> str:
        """The options that differ from the original evaluator's, as text (empty for the original evaluator)."""
        default = ORIGINAL
        relevant = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                    if getattr(self, f.name) != getattr(default, f.name)}
        if self.timesteps != "focused":
            relevant.pop("center", None), relevant.pop("width", None)
        if self.snr_weighting == "none":
            relevant.pop("snr_gamma", None)
        return ",".join(f"{k}={v}" for k, v in sorted(relevant.items()))

    def draw_timesteps(self, count: int, seed: int, num_timesteps: int) -> torch.Tensor | None:
        """Seeded timesteps of this distribution (``None``: the validation set's own uniform draw)."""
        generator = torch.Generator().manual_seed(seed + 1)
        if self.timesteps == "uniform":
            return None
        if self.timesteps == "focused":
            drawn = torch.randn(count, generator=generator) * self.width + self.center
            return drawn.round().clamp(0, num_timesteps - 1).to(torch.long)
        lo, hi = self.timesteps
        return torch.randint(lo, hi + 1, (count,), generator=generator)


def has_identity_arch(space: Any) -> bool:
    """Whether every decision of ``space`` offers the ``identity`` op."""
    return all(any(c.op == "identity" for c in d.candidates) for d in space.decisions)


def identity_arch(space: Any) -> Arch:
    """The arch whose every decision is the ``identity`` op (a ConfigError when a decision has none)."""
    labels = {}
    for decision in space.decisions:
        label = next((c.label for c in decision.candidates if c.op == "identity"), None)
        if label is None:
            raise ConfigError(f"baseline 'identity' needs an identity candidate in every decision ({decision.name} "
                              "has none)", key="evaluators.distillation.baseline", allowed=BASELINES)
        labels[decision.name] = label
    return space.arch(labels, default=None)


ORIGINAL = FidelityOptions("epsilon", "uniform", snr_weighting="none", baseline="none")
"""The first distillation evaluator's options: its fingerprint has no option suffix, so old search folders keep
their provenance (a folder scored with other options does not match)."""


class DistillationEvaluator(Evaluator):
    """Relative distillation loss of the arch's student vs the teacher on a fixed validation set."""

    name = "distillation"

    def __init__(self, supernet: Supernet, validation: ValidationSet, *, surrogates_id: str = "untrained",
                 options: FidelityOptions | None = None, reuse_prefix: bool = True) -> None:
        self.supernet = supernet.eval().to(validation.device)
        self.validation, self.surrogates_id = validation, surrogates_id
        self.options = options or ORIGINAL
        if self.options.describe() and validation.alphas_cumprod is None:
            raise ConfigError("options need a validation set built by ValidationSet.build", key="evaluators")
        self._baseline: dict[int | None, float] = {}
        self.memo = PrefixMemo(self.supernet.unet, list(self.supernet.blocks)) if reuse_prefix else None
        if self.options.baseline == "identity":
            self.identity = identity_arch(supernet.space)

    def _space(self, prediction: torch.Tensor, part: slice) -> torch.Tensor:
        """Epsilon predictions of batch ``part`` converted to the option's prediction space."""
        data, kind = self.validation, self.options.prediction
        if kind == "epsilon":
            return prediction
        alpha = data.alphas_cumprod[data.timesteps[part]].double().view(-1, 1, 1, 1)
        x0 = (data.noisy[part].double() - (1 - alpha).sqrt() * prediction) / alpha.sqrt()
        return x0 if kind == "x0" else alpha.sqrt() * prediction - (1 - alpha).sqrt() * x0

    def _weights(self, part: slice) -> torch.Tensor:
        """Per-sample loss weights of batch ``part`` (ones without SNR weighting)."""
        data = self.validation
        count = len(data.timesteps[part])
        if self.options.snr_weighting == "none":
            return torch.ones(count, dtype=torch.float64, device=data.device)
        alpha = data.alphas_cumprod[data.timesteps[part]].double()
        snr = alpha / (1 - alpha)
        weight = snr.clamp(max=self.options.snr_gamma)
        return weight / {"epsilon": snr, "x0": torch.ones_like(snr), "v": snr + 1}[self.options.prediction]

    @torch.no_grad()
    def _relative(self, arch: Arch, batches: int) -> tuple[float, float]:
        """``(weighted mse / weighted variance of the teacher's outputs, weighted mse)`` of ``arch``."""
        data = self.validation
        self.supernet.activate(arch)
        labels = {path: block.labels[block.active] for path, block in self.supernet.blocks.items()}
        squared_error, target_sq, target_sum, count = 0.0, 0.0, 0.0, 0.0
        for b in range(batches):
            part = slice(b * data.batch_size, (b + 1) * data.batch_size)
            reuse = self.memo.active(labels, b) if self.memo is not None else contextlib.nullcontext()
            with reuse, autocast(data.device, data.dtype):
                output = self.supernet(data.noisy[part], data.timesteps[part],
                                       encoder_hidden_states=data.context[part]).sample
            output, target = self._space(output.double(), part), self._space(data.target[part].double(), part)
            weight = self._weights(part).view(-1, 1, 1, 1)
            per_sample = target[0].numel()
            squared_error += float((weight * (output - target) ** 2).sum())
            target_sq += float((weight * target ** 2).sum())
            target_sum += float((weight * target).sum())
            count += float(weight.sum()) * per_sample
        mse = squared_error / count
        variance = target_sq / count - (target_sum / count) ** 2
        return mse / variance, mse

    def evaluate(self, arch: Arch, budget: int | None = None) -> dict[str, float]:
        data = self.validation
        batches = data.num_batches if budget is None else budget
        if not 1 <= batches <= data.num_batches:
            raise ConfigError(f"budget {budget} out of range", key="budget", allowed=f"1..{data.num_batches} batches")
        loss, mse = self._relative(arch, batches)
        if self.options.baseline == "none":
            return {"loss": loss, "mse": mse}
        if budget not in self._baseline:
            self._baseline[budget] = self._relative(self.identity, batches)[0]
        baseline = self._baseline[budget]
        return {"loss": loss / baseline, "mse": mse, "raw_loss": loss, "baseline_loss": baseline}

    @property
    def fingerprint(self) -> str:
        v = self.validation
        text = f"{space_fingerprint(self.supernet.space)}:{self.surrogates_id}:{len(v.noisy)}:{v.batch_size}:{v.seed}"
        if v.dtype != torch.float32 or v.noisy.shape[-1] != self.supernet.space.latent_size:
            text += f":{v.dtype}:{tuple(v.noisy.shape[1:])}"  # precision and size change the scores
        if self.options.describe():
            text += f":{self.options.describe()}"  # the original evaluator keeps its fingerprint
        return f"distillation:{hashlib.sha1(text.encode()).hexdigest()[:12]}"


def fidelity_validation(context: EvaluationContext, options: FidelityOptions) -> ValidationSet:
    """The search's validation set, re-noised at the options' timesteps when they are not the uniform default."""
    base: ValidationSet = context.get("validation")
    num_timesteps = len(base.alphas_cumprod) if base.alphas_cumprod is not None else 1000
    timesteps = options.draw_timesteps(len(base.noisy), base.seed, num_timesteps)
    if timesteps is None:
        return base
    if base.latents is None:
        raise ConfigError("timestep options need a validation set built by ValidationSet.build",
                          key="evaluators.distillation.timesteps")
    scheduler = DDPMScheduler(num_train_timesteps=num_timesteps)
    scheduler.alphas_cumprod = base.alphas_cumprod.cpu()
    return ValidationSet.build(context.teacher, base.latents.cpu(), batch_size=base.batch_size, seed=base.seed,
                               scheduler=scheduler, device=base.device, dtype=base.dtype, timesteps=timesteps)


@register_evaluator("distillation")
def distillation_evaluator(context: EvaluationContext, **options: Any) -> DistillationEvaluator:
    """The search's ``distillation`` evaluator: its supernet (with the trained surrogates), validation set and
    options (see the module doc)."""
    reuse_prefix = options.pop("reuse_prefix", True)
    if not isinstance(reuse_prefix, bool):
        raise ConfigError(f"{reuse_prefix!r} is not allowed", key="evaluators.distillation.reuse_prefix",
                          allowed=[True, False])
    parsed = FidelityOptions.parse(options, 1000)
    if "baseline" not in options and not has_identity_arch(context.space):
        parsed = dataclasses.replace(parsed, baseline="none")  # the default needs an identity op in every decision
    validation = fidelity_validation(context, parsed)
    return DistillationEvaluator(context.get("supernet"), validation, surrogates_id=context.surrogates_id,
                                 options=parsed, reuse_prefix=reuse_prefix)
