"""Assembling a search from its config: space, teacher, cost table, supernet with surrogates, evaluators."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

import search_spaces
from evaluators import Evaluator, make_evaluator
from evaluators.context import EvaluationContext
from evaluators.distillation import ValidationSet

from ..arch import Arch
from ..distill.inputs import build_latent_source, noise_scheduler
from ..errors import ConfigError
from ..executors import executor_from_config
from ..profiling.cost_table import CostTable, build_cost_table, space_fingerprint
from ..supernet import Supernet
from ..teachers import Teacher, load_teacher
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


def validation_latents(teacher: Teacher, config: ValidationConfig, latent_size: int) -> torch.Tensor:
    """Clean latents of the validation set: the held-out stream of the configured latent source."""
    source = build_latent_source(config.latents, teacher, latent_size, length=config.count, seed=config.seed,
                                 held_out=True)
    return source.latents(list(range(config.count)))


def trained_supernet(teacher: Teacher, space: search_spaces.SearchSpace, surrogates: str | Path | None) -> Supernet:
    """The supernet of ``space`` with the candidates trained in the ``surrogates`` folder (initial ones without)."""
    supernet = Supernet(teacher, space)
    if surrogates is None:
        logger.warning("no surrogates folder given: candidates keep their initial weights")
        return supernet
    from ..distill.store import load_surrogates  # noqa: PLC0415

    statuses = load_surrogates(supernet, surrogates)
    logger.info("loaded surrogates: %d trained of %d candidates", sum(s == "done" for s in statuses.values()),
                len(statuses))
    return supernet


def extract_arch(space_spec: str, arch_text: str, surrogates: str | Path | None, out: str | Path) -> Arch:
    """Save the compact UNet of ``arch_text`` (with its trained surrogates) to ``out``."""
    space = search_spaces.load(space_spec)
    arch = space.parse(arch_text)
    supernet = trained_supernet(load_teacher(space.teacher), space, surrogates)
    with torch.no_grad():
        supernet.extract(arch).save_pretrained(out)
    return arch


def evaluation_context(config: SearchConfig, out_dir: Path, space: search_spaces.SearchSpace,
                       teacher: Teacher) -> EvaluationContext:
    """What the search's evaluators are built from; the cost table, supernet and validation set are built lazily."""
    latent_size = space.latent_size or teacher.latent_size

    def validation() -> ValidationSet:
        latents = validation_latents(teacher, config.validation, latent_size)
        return ValidationSet.build(teacher, latents, batch_size=config.validation.batch_size,
                                   seed=config.validation.seed, scheduler=noise_scheduler(space.teacher))

    surrogates = str(Path(config.surrogates).resolve()) if config.surrogates else "untrained"
    return EvaluationContext(
        space=space, teacher=teacher, cache_dir=out_dir, constraints=config.constraints,
        shared={"cost_table": lambda: cached_cost_table(teacher, space, out_dir),
                "supernet": lambda: trained_supernet(teacher, space, config.surrogates),
                "validation": validation},
        surrogates_id=f"{space_fingerprint(space)}:{surrogates}")


def build_evaluators(config: SearchConfig, context: EvaluationContext) -> list[Evaluator]:
    """The evaluators the config names, built through the registry with their options, in order."""
    evaluators = []
    for spec in config.effective_evaluators:
        try:
            evaluators.append(make_evaluator(spec.name, context=context, **spec.options))
        except TypeError as err:  # an option the factory does not take
            raise ConfigError(f"evaluator '{spec.name}': {err}", key="evaluators") from err
    return evaluators


def build_runner(config: SearchConfig, out_dir: str | Path) -> SearchRunner:
    """Everything a search needs, from its config; tables measured once (cost, latency) are cached in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    space = search_spaces.load(config.space)
    context = evaluation_context(config, out_dir, space, load_teacher(space.teacher))
    evaluators = build_evaluators(config, context)
    return SearchRunner(config, out_dir, space=space, table=context.get("cost_table"),
                        cheap=[e for e in evaluators if e.cheap], expensive=[e for e in evaluators if not e.cheap],
                        executor=executor_from_config(config.executor))
