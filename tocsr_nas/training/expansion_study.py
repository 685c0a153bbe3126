"""The expansion study: a 4-channel teacher (a), its expansion to 16 channels (b), a 16-channel teacher trained
from scratch (c) and a 4-channel one trained as long as (c) (d), compared on VAE reconstruction PSNR (whole images,
and the same images reconstructed in squares of the VAE training crop size) and held-out denoising loss.

(a) trains a ``latent_channels: small`` VAE for ``vae_loop.steps`` steps, then a ``teacher``-shaped UNet on its
latents for ``unet_loop.steps``. (b) runs the ``expand`` recipe on (a) with the same per-stage budgets (its VAE
stage, which fine-tunes a VAE that starts equal to (a)'s, at peak lr ``expand_lr``), so its VAE and UNet have
trained twice those budgets since random init. (c) trains a ``latent_channels: large`` VAE and UNet from random init
for twice the budgets: (b) and (c) have the same number of steps. (d) is (c) with ``small`` latent channels, the
control at equal steps: (c) against (d) measures what the latent's width alone gives, (b) against (d) what the
expansion gives over training the 4-channel model as long. Every teacher checkpoint is kept and its EMA weights'
held-out loss measured afterwards, giving loss-vs-step curves ((b)'s continues (a)'s, plus the widened but untrained
UNet at step ``unet_loop.steps``). Every VAE checkpoint is kept too, and its reconstruction PSNR on the same
held-out crops gives PSNR-vs-step curves ((b)'s continues (a)'s). (b)'s VAE is also measured on its first ``small``
latent channels alone (the rest zero), which shows how much its extra channels add. Each held-out loss is on the
model's own VAE latents (posterior means times its scaling factor), so latent spaces differ between models; "predict
zero" and the best per-channel linear denoiser (:func:`linear_denoiser_loss`, how hard each latent space is) are
given beside each. Every sub-run has its own folder and resumes from its checkpoints; ``study.json`` is rewritten
after each.
"""
from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
import torch
import yaml
from diffusers import AutoencoderKL

from ..atomic import write_json, write_text
from ..config_io import read_mapping
from ..data.images import BUILTIN, ImageCropDataset, resolve_image_files
from ..errors import ConfigError
from ..expansion import leading_channels_only, widen_unet
from ..sr.metrics import psnr_y
from ..teachers import CONFIG_DIR, Teacher, load_teacher
from ..teachers.weights import untrained_teacher
from ..vae import build_vae, load_vae, vae_stride
from .checkpoint import list_checkpoints, load_checkpoint
from .config import DataConfig, LoopConfig
from .evaluate import denoising_loss, psnr, reconstruct, reconstruction_psnr
from .expand_recipe import ExpandRecipe, ExpandVaeLoss, run_expand_recipe
from .loop import CHECKPOINT_DIR
from .teacher_recipe import (
    SchedulerConfig,
    TeacherModel,
    TeacherRecipe,
    held_out_latents,
    held_out_zero_baseline,
    run_teacher_recipe,
)
from .vae_recipe import VaeLoss, VaeRecipe, run_vae_recipe

log = logging.getLogger(__name__)
RESULTS_FILE = "study.json"
MODELS = ("a", "b", "c", "d")
LABELS = {"a": "(a) 4-channel", "b": "(b) expanded 16-channel", "c": "(c) 16-channel from scratch",
          "d": "(d) 4-channel as long as (c)"}


class ExpansionStudy(pydantic.BaseModel, extra="forbid"):
    """The ``expansion:`` section of an experiment (``experiments/expansion.yaml``)."""

    data: DataConfig  # VAE training crops (an image folder)
    unet_data: DataConfig  # UNet training crops
    eval: list[str] = pydantic.Field(min_length=1)  # folders: whole-image reconstruction PSNR (never trained on)
    held_out: str  # folder: crops for the held-out denoising loss (never trained on)
    held_out_crops: int = pydantic.Field(32, gt=0)
    small: int = pydantic.Field(4, gt=0)  # latent channels of (a)
    large: int = pydantic.Field(16, gt=0)  # latent channels of (b) and (c)
    teacher: str = "tiny-ldm"  # UNet shape (name or config file); its latent channels are set per model
    unet: dict[str, Any] = {}  # overrides of the teacher's UNet config (e.g. narrower blocks for a CPU)
    vae: dict[str, Any]  # VAE architecture; latent_channels is set per model
    vae_loss: VaeLoss = VaeLoss()
    expand_loss: ExpandVaeLoss = ExpandVaeLoss()
    vae_loop: LoopConfig  # per stage: (a) and the expansion train this many steps, (c) and (d) twice as many
    expand_lr: float | None = pydantic.Field(None, gt=0)  # peak lr of (b)'s VAE fine-tuning (default vae_loop.lr)
    unet_loop: LoopConfig
    scheduler: SchedulerConfig = SchedulerConfig()

    @pydantic.model_validator(mode="after")
    def _wider(self) -> ExpansionStudy:
        if self.large <= self.small:
            raise ValueError(f"large ({self.large}) must exceed small ({self.small})")
        return self


def check_study(study: ExpansionStudy, source: str | Path = "expansion") -> None:
    """Refuse, before anything is written, a missing or empty folder, an evaluation folder that is trained on and
    VAE crops that are not a multiple of the VAE's stride."""
    stride = vae_stride(build_vae({**study.vae, "latent_channels": study.small}))
    if study.data.crop_size % stride:
        raise ConfigError(f"VAE training crops of {study.data.crop_size} px are not a multiple of the VAE's stride "
                          f"{stride}", source=source, key="expansion.data.crop_size")
    train = {str(Path(d.source).resolve()) if d.source != BUILTIN else BUILTIN for d in (study.data, study.unet_data)}
    for key, folder in [("data.source", study.data.source), ("unet_data.source", study.unet_data.source),
                        ("held_out", study.held_out), *((f"eval[{i}]", f) for i, f in enumerate(study.eval))]:
        try:
            resolve_image_files(folder)
        except ConfigError as err:
            raise ConfigError(str(err), source=source, key=f"expansion.{key}") from None
        held_out = folder if folder == BUILTIN else str(Path(folder).resolve())
        if not key.endswith("source") and held_out in train:
            raise ConfigError(f"'{folder}' is also a training folder: evaluation images must be held out",
                              source=source, key=f"expansion.{key}")


def _teacher_config(folder: Path, shape: str, unet: dict[str, Any], channels: int) -> Path:
    """``shape``'s teacher config with ``unet`` overrides, ``channels`` latent channels and no weights, written into
    ``folder``."""
    path = CONFIG_DIR / f"{shape}.yaml" if (CONFIG_DIR / f"{shape}.yaml").is_file() else Path(shape)
    data = {k: v for k, v in read_mapping(path).items() if k != "weights"}
    data["unet"] = {**data["unet"], **unet, "in_channels": channels, "out_channels": channels}
    target = folder / f"teacher-{channels}ch.yaml"
    write_text(target, yaml.safe_dump(data, sort_keys=False))
    return target


def _keep_all(loop: LoopConfig, steps: int) -> LoopConfig:
    """``loop`` with ``steps`` steps, keeping every checkpoint (the curves are measured on them)."""
    return loop.model_copy(update={"steps": steps, "keep_checkpoints": steps // loop.checkpoint_every + 1})


def run_study(study: ExpansionStudy, out: str | Path,
              on_update: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the study in ``out``; returns the results (also in ``out/study.json``).

    ``on_update`` is called with the results so far after every finished sub-run (partial results survive a crash).
    """
    out = Path(out)
    check_study(study)
    out.mkdir(parents=True, exist_ok=True)
    previous = json.loads((out / RESULTS_FILE).read_text()) if (out / RESULTS_FILE).is_file() else {}
    results: dict[str, Any] = {"config": study.model_dump(mode="json"),
                               "wall_s": previous.get("wall_s", {}), "models": {m: {} for m in MODELS}}
    v, u = study.vae_loop.steps, study.unet_loop.steps
    configs = {c: _teacher_config(out, study.teacher, study.unet, c) for c in (study.small, study.large)}
    scheduler = study.scheduler.build()
    eval_files = {Path(f).name: resolve_image_files(f) for f in study.eval}

    def update(name: str, seconds: float | None) -> None:
        if seconds is not None:
            results["wall_s"][name] = results["wall_s"].get(name, 0.0) + seconds
        write_json(out / RESULTS_FILE, results, indent=2)
        if on_update is not None:
            on_update(results)

    def timed(name: str, done: Path, fn: Callable[[], Any]) -> None:
        if done.exists():
            update(name, None)
            return
        start = time.perf_counter()
        fn()
        update(name, time.perf_counter() - start)

    def vae_run(name: str, channels: int, steps: int) -> None:
        recipe = VaeRecipe(data=study.data, loop=_keep_all(study.vae_loop, steps),
                           vae={**study.vae, "latent_channels": channels}, loss=study.vae_loss)
        timed(name, out / name / "vae" / "vae.safetensors", lambda: run_vae_recipe(recipe, out / name))

    def teacher_run(name: str, channels: int, vae: Path, steps: int) -> None:
        recipe = TeacherRecipe(teacher=str(configs[channels]), vae=str(vae), data=study.unet_data,
                               loop=_keep_all(study.unet_loop, steps), scheduler=study.scheduler,
                               held_out_source=study.held_out, held_out_crops=study.held_out_crops)
        timed(name, out / name / "weights" / "manifest.json", lambda: run_teacher_recipe(recipe, out / name))

    def evaluate(model: str, vae: AutoencoderKL, runs: list[tuple[Path, int, Path]],
                 vae_runs: list[tuple[Path, int]]) -> None:
        """PSNR of ``vae`` and of every VAE checkpoint in ``vae_runs`` (folder, step offset); held-out loss of every
        teacher checkpoint in ``runs`` (folder, step offset, config)."""
        row = results["models"][model]
        row["latent_channels"] = int(vae.config.latent_channels)
        row["psnr"] = {name: reconstruction_psnr(vae, files) for name, files in eval_files.items()}
        row["psnr_tiled"] = {name: reconstruction_psnr(vae, files, study.data.crop_size)
                             for name, files in eval_files.items()}
        crops = _held_out_crops(study.held_out, study.unet_data.crop_size, study.held_out_crops)
        vae_shape = {**study.vae, "latent_channels": row["latent_channels"]}
        row["vae_curve"] = [point for folder, offset in vae_runs
                            for point in _vae_curve(folder, offset, vae_shape, crops)]
        latents = held_out_latents(vae, study.held_out, study.unet_data.crop_size, study.held_out_crops)
        row["predict_zero"] = held_out_zero_baseline(latents, scheduler)
        row["linear_denoiser"] = linear_denoiser_loss(latents, scheduler)
        row["latent_std"] = float(latents.std())
        row["curve"] = [point for folder, offset, config in runs
                        for point in _curve(folder, offset, config, latents, scheduler)]
        row["held_out_loss"] = row["curve"][-1][1]
        update(f"evaluate_{model}", None)

    vae_run("a_vae", study.small, v)
    teacher_run("a_teacher", study.small, out / "a_vae" / "vae", u)
    results["models"]["a"] = {"steps": {"vae": v, "unet": u}}
    evaluate("a", load_vae(out / "a_vae" / "vae"), [(out / "a_teacher", 0, configs[study.small])],
             [(out / "a_vae", 0)])

    source = yaml.safe_load(configs[study.small].read_text())
    source["weights"] = str((out / "a_teacher" / "weights").resolve())
    write_text(out / "source.yaml", yaml.safe_dump(source, sort_keys=False))
    expand_loop = study.vae_loop.model_copy(update={"lr": study.expand_lr or study.vae_loop.lr})
    expand = ExpandRecipe(teacher=str(out / "source.yaml"), channels=study.large, data=study.data,
                          unet_data=study.unet_data, vae_loop=_keep_all(expand_loop, v), vae_loss=study.expand_loss,
                          unet_loop=_keep_all(study.unet_loop, u), scheduler=study.scheduler,
                          held_out_source=study.held_out, held_out_crops=study.held_out_crops)
    timed("b_expanded", out / "b_expanded" / "teacher.yaml", lambda: run_expand_recipe(expand, out / "b_expanded"))
    expanded = load_teacher(out / "b_expanded")
    results["models"]["b"] = {"steps": {"vae": 2 * v, "unet": 2 * u}}
    evaluate("b", expanded.vae, [(out / "b_expanded" / "unet", u, configs[study.large])],
             [(out / "b_expanded" / "vae", v)])
    widened = _widened_start(out / "a_teacher", configs[study.small], study.large, study.unet_loop.seed)
    latents = held_out_latents(expanded.vae, study.held_out, study.unet_data.crop_size, study.held_out_crops)
    results["models"]["b"]["widened_start"] = [u, denoising_loss(widened, latents, scheduler)]
    leading = leading_channels_only(expanded.vae, study.small)
    results["models"]["b"]["psnr_tiled_old_subspace"] = {
        name: reconstruction_psnr(leading, files, study.data.crop_size) for name, files in eval_files.items()}
    update("evaluate_b", None)

    for model, channels in (("c", study.large), ("d", study.small)):
        vae_run(f"{model}_vae", channels, 2 * v)
        teacher_run(f"{model}_teacher", channels, out / f"{model}_vae" / "vae", 2 * u)
        results["models"][model] = {"steps": {"vae": 2 * v, "unet": 2 * u}}
        evaluate(model, load_vae(out / f"{model}_vae" / "vae"), [(out / f"{model}_teacher", 0, configs[channels])],
                 [(out / f"{model}_vae", 0)])
    return results


def linear_denoiser_loss(latents: torch.Tensor, scheduler: Any, seed: int = 0) -> float:
    """The held-out loss (same seeded noise and timesteps as :func:`denoising_loss`) of the best per-channel affine
    noise predictor for Gaussian latents with the held-out latents' channel means and variances.

    A model-free reference for how hard a latent space is to denoise: a channel of small variance is nearly all
    noise once noised, so its noise is easy to predict. Losses on different latent spaces compare fairly only
    relative to it.
    """
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(latents.shape, generator=generator)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents),), generator=generator)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    alpha_bar = scheduler.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    mean = latents.mean(dim=(0, 2, 3), keepdim=True)
    var = latents.var(dim=(0, 2, 3), keepdim=True)
    prediction = (1 - alpha_bar).sqrt() * (noisy - alpha_bar.sqrt() * mean) / (alpha_bar * var + 1 - alpha_bar)
    return float((prediction - noise).square().mean())


def _checkpoint_teacher(config: Path, state: dict[str, torch.Tensor]) -> Teacher:
    """The teacher of ``config`` with a checkpoint's UNet + context weights."""
    teacher = untrained_teacher(config)
    TeacherModel(teacher).load_state_dict(state)
    teacher.unet.eval()
    return teacher


@torch.no_grad()
def _curve(folder: Path, offset: int, config: Path, latents: torch.Tensor, scheduler: Any) -> list[list[float]]:
    """``[step + offset, held-out loss]`` of every checkpoint's EMA (else model) weights under ``folder``."""
    points = []
    for path in list_checkpoints(folder / CHECKPOINT_DIR):
        checkpoint = load_checkpoint(path)
        teacher = _checkpoint_teacher(config, checkpoint.ema if checkpoint.ema is not None else checkpoint.model)
        points.append([checkpoint.step + offset, denoising_loss(teacher, latents, scheduler)])
    return points


def _held_out_crops(source: str, crop_size: int, count: int, seed: int = 12345) -> list[torch.Tensor]:
    """The ``count`` seeded crops (no flips) of ``source`` that :func:`held_out_latents` encodes."""
    dataset = ImageCropDataset(resolve_image_files(source), crop_size, count, seed=seed, flips=False)
    return [dataset[i] for i in range(count)]


@torch.no_grad()
def _vae_curve(folder: Path, offset: int, shape: dict[str, Any], crops: list[torch.Tensor]) -> list[list[Any]]:
    """``[step + offset, {"rgb": dB, "y": dB}]``: mean reconstruction PSNR of ``crops`` (posterior mean) by every VAE
    checkpoint under ``folder``."""
    points = []
    for path in list_checkpoints(folder / CHECKPOINT_DIR):
        checkpoint = load_checkpoint(path)
        vae = build_vae(shape)
        vae.load_state_dict(checkpoint.model)
        recons = [reconstruct(vae.eval(), crop) for crop in crops]
        points.append([checkpoint.step + offset,
                       {"rgb": sum(psnr(c, r) for c, r in zip(crops, recons)) / len(crops),
                        "y": sum(psnr_y(r, c) for c, r in zip(crops, recons)) / len(crops)}])
    return points


def _widened_start(folder: Path, config: Path, channels: int, seed: int) -> Teacher:
    """(a)'s final EMA UNet widened to ``channels`` (the expanded UNet before fine-tuning)."""
    checkpoint = load_checkpoint(list_checkpoints(folder / CHECKPOINT_DIR)[-1])
    teacher = _checkpoint_teacher(config, checkpoint.ema if checkpoint.ema is not None else checkpoint.model)
    teacher.unet = widen_unet(copy.deepcopy(teacher.unet), channels, seed=seed).eval()
    return teacher


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of a study's results (per model: PSNR per evaluation folder, whole and in squares, final
    held-out loss)."""
    return {model: {key: row.get(key) for key in ("psnr", "psnr_tiled", "held_out_loss")}
            for model, row in results["models"].items()}


def _psnr_cells(psnr_by_set: dict[str, dict[str, float]], sets: list[str]) -> str:
    """``RGB | Y`` table cells (dB) for each evaluation set."""
    return " | ".join(f"{psnr_by_set[s]['rgb']:.2f} | {psnr_by_set[s]['y']:.2f}" for s in sets)


def markdown(results: dict[str, Any]) -> str:
    """The results as Markdown: one row per model, then the held-out loss and VAE PSNR curves by step."""
    models = {m: row for m, row in results["models"].items() if "held_out_loss" in row}
    if not models:
        return "No model evaluated yet.\n"
    sets = list(next(iter(models.values()))["psnr"])
    wall = results["wall_s"]
    walls = {"a": ("a_vae", "a_teacher"), "b": ("a_vae", "a_teacher", "b_expanded"), "c": ("c_vae", "c_teacher"),
             "d": ("d_vae", "d_teacher")}
    lines = ["| model | latent ch | VAE steps | UNet steps | " + " | ".join(f"{s} RGB | {s} Y" for s in sets)
             + " | held-out loss | linear denoiser | predict zero | train wall (s) |",
             "|---|---:|---:|---:|" + "---:|" * (2 * len(sets)) + "---:|---:|---:|---:|"]
    for model, row in models.items():
        cells = _psnr_cells(row["psnr"], sets)
        seconds = sum(wall.get(part, float("nan")) for part in walls[model])
        lines.append(f"| {LABELS[model]} | {row['latent_channels']} | {row['steps']['vae']} | {row['steps']['unet']} "
                     f"| {cells} | {row['held_out_loss']:.4f} | {row['linear_denoiser']:.4f} | {row['predict_zero']:.4f} "
                     f"| {seconds:.0f} |")
    tiled = {m: row["psnr_tiled"] for m, row in models.items() if "psnr_tiled" in row}
    if tiled:
        lines += ["", f"The same images reconstructed in {results['config']['data']['crop_size']} px squares, each "
                  "encoded and decoded alone (the VAE training crop size; GroupNorm then normalises with the "
                  "statistics of a training-sized crop, which whole images do not have), PSNR in dB:", "",
                  "| model | " + " | ".join(f"{s} RGB | {s} Y" for s in sets) + " |",
                  "|---|" + "---:|" * (2 * len(sets))]
        for model, row in tiled.items():
            lines.append(f"| {LABELS[model]} | {_psnr_cells(row, sets)} |")
            if "psnr_tiled_old_subspace" in models[model]:
                lines.append(f"| {LABELS[model]}, its first {results['config']['small']} latent channels alone (the "
                             f"rest zero) | {_psnr_cells(models[model]['psnr_tiled_old_subspace'], sets)} |")
    curves = {m: dict((int(s), v) for s, v in models[m]["curve"]) for m in MODELS if m in models}
    if "b" in models and "widened_start" in models["b"]:
        step, value = models["b"]["widened_start"]
        curves["b"][int(step)] = value
    steps = sorted({s for curve in curves.values() for s in curve})
    if steps:
        names = list(curves)
        lines += ["", "Held-out loss by UNet step since random init (EMA weights of each checkpoint; (b) continues "
                  "(a) from its last step, where the widened, not yet fine-tuned UNet is measured):", "",
                  "| step | " + " | ".join(LABELS[m] for m in names) + " |", "|---:|" + "---:|" * len(names)]
        for step in steps:
            lines.append(f"| {step} | " + " | ".join(f"{curves[m][step]:.4f}" if step in curves[m] else ""
                                                     for m in names) + " |")
    vae_curves = {m: {int(s): v for s, v in models[m].get("vae_curve", [])} for m in MODELS if m in models}
    vae_steps = sorted({s for curve in vae_curves.values() for s in curve})
    if vae_steps:
        names = list(vae_curves)
        lines += ["", "VAE reconstruction PSNR (dB, RGB / Y) of the held-out crops by VAE step since random init "
                  "(every checkpoint; (b) continues (a) from its last step, where the expanded VAE decodes as (a)'s):",
                  "",
                  "| step | " + " | ".join(LABELS[m] for m in names) + " |", "|---:|" + "---:|" * len(names)]
        for step in vae_steps:
            lines.append(f"| {step} | " + " | ".join(
                f"{vae_curves[m][step]['rgb']:.2f} / {vae_curves[m][step]['y']:.2f}" if step in vae_curves[m] else ""
                for m in names) + " |")
    return "\n".join(lines) + "\n"
