"""Assembling a search from its config: space, teacher, cost table, supernet with surrogates, evaluators."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from diffusers import DDPMScheduler

import search_spaces
from evaluators.cost import CostEvaluator
from evaluators.distillation import DistillationEvaluator, ValidationSet

from ..errors import ConfigError
from ..profiling.cost_table import CostTable, build_cost_table, space_fingerprint
from ..supernet import Supernet
from ..teachers import Teacher, load_teacher
from ..teachers.weights import load_scheduler, weights_folder
from .config import SearchConfig, ValidationConfig
from .runner import SearchRunner

logger = logging.getLogger(__name__)
COST_TABLE_FILE = "cost_table.json"


def cached_cost_table(teacher: Teacher, space: search_spaces.SearchSpace, folder: Path) -> CostTable:
    """The space's cost table from ``folder/cost_table.json``, built and saved there when missing or stale."""
    path = folder / COST_TABLE_FILE
    if path.is_file():
        try:
            return CostTable.load(path, space)
        except ConfigError:
            logger.warning("%s is for another space: rebuilding it", path)
    table = build_cost_table(teacher, space, ptflops=False, progress=False)
    table.save(path)
    return table


def teacher_scheduler(spec: str) -> DDPMScheduler:
    """The noise schedule the teacher was trained with (the DDPM default when it ships no weights)."""
    folder = weights_folder(spec)
    return load_scheduler(folder) if folder is not None else DDPMScheduler(num_train_timesteps=1000)


def validation_latents(teacher: Teacher, config: ValidationConfig, latent_size: int) -> torch.Tensor:
    """Clean latents for the validation set: VAE latents of seeded real-image crops (or N(0,1) for smoke tests)."""
    shape = (config.count, teacher.latent_channels, latent_size, latent_size)
    if config.source == "gaussian":
        return torch.randn(shape, generator=torch.Generator().manual_seed(config.seed))
    if teacher.vae is None:
        raise ConfigError(f"teacher '{teacher.name}' has no VAE to encode images", key="validation.source",
                          allowed=["gaussian (smoke tests)", "a teacher with trained weights"])
    from ..training.teacher_recipe import held_out_latents  # noqa: PLC0415

    factor = 2 ** (len(teacher.vae.config.block_out_channels) - 1)
    return held_out_latents(teacher.vae, config.images, latent_size * factor, config.count, seed=config.seed)


def build_runner(config: SearchConfig, out_dir: str | Path) -> SearchRunner:
    """Everything a search needs, from its config; the cost table is cached in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    space = search_spaces.load(config.space)
    teacher = load_teacher(space.teacher)
    table = cached_cost_table(teacher, space, out_dir)
    cheap = [CostEvaluator(table, max_gmacs=config.max_gmacs, max_params_m=config.max_params_m)]
    supernet = Supernet(teacher, space)
    surrogates_id = "untrained"
    if config.surrogates:
        from ..distill.store import load_surrogates  # noqa: PLC0415

        surrogates_id = load_surrogates(supernet, config.surrogates)
    else:
        logger.warning("no surrogates folder given: candidates keep their initial weights")
    latent_size = space.latent_size or teacher.latent_size
    latents = validation_latents(teacher, config.validation, latent_size)
    validation = ValidationSet.build(teacher, latents, batch_size=config.validation.batch_size,
                                     seed=config.validation.seed, scheduler=teacher_scheduler(space.teacher))
    expensive = [DistillationEvaluator(supernet, validation, surrogates_id=f"{space_fingerprint(space)}:{surrogates_id}")]
    return SearchRunner(config, out_dir, space=space, table=table, cheap=cheap, expensive=expensive)
