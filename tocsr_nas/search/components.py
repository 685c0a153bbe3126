"""Assembling a search from its config: space, teacher, cost table, supernet with surrogates, evaluators."""
from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch

import search_spaces
from evaluators.cost import CostEvaluator
from evaluators.distillation import DistillationEvaluator, ValidationSet

from ..arch import Arch
from ..device import resolve_device, resolve_dtype
from ..distill.inputs import build_latent_source, noise_scheduler
from ..errors import ConfigError
from ..executors import executor_from_config
from ..profiling.cost_table import CostTable, build_cost_table, space_fingerprint
from ..supernet import Supernet
from ..teachers import Teacher, load_teacher
from .config import SearchConfig, ValidationConfig
from .runner import ExpensiveEvaluation, SearchRunner

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


def compact_cost(search_folder: str | Path, space_spec: str, arch: Arch) -> dict[str, float] | None:
    """Params and GMACs of ``arch`` and of the teacher, from the search's cost table (``None`` without one)."""
    path = Path(search_folder) / COST_TABLE_FILE
    if not path.is_file():
        return None
    table = CostTable.load(path, search_spaces.load(space_spec))
    cost, teacher, ratios = table.cost(arch), table.teacher_total, table.ratios(arch)
    return {"params_m": cost.params / 1e6, "gmacs": cost.gmacs, "teacher_params_m": teacher.params / 1e6,
            "teacher_gmacs": teacher.gmacs, "params_ratio": ratios["params"], "macs_ratio": ratios["macs"],
            "latent_size": table.latent_size}


def expensive_evaluation(config: SearchConfig, teacher: Teacher | None = None,
                         space: search_spaces.SearchSpace | None = None) -> ExpensiveEvaluation:
    """The distillation evaluator of ``config`` on its device, wrapped for the runner (a Ray actor calls this
    once: it loads the teacher, the supernet with its surrogates and the validation set itself)."""
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    space = space if space is not None else search_spaces.load(config.space)
    teacher = teacher if teacher is not None else load_teacher(space.teacher)
    supernet = trained_supernet(teacher, space, config.surrogates)
    surrogates_id = str(Path(config.surrogates).resolve()) if config.surrogates else "untrained"
    latent_size = config.latent_size or space.latent_size or teacher.latent_size
    latents = validation_latents(teacher, config.validation, latent_size)
    validation = ValidationSet.build(teacher, latents, batch_size=config.validation.batch_size,
                                     seed=config.validation.seed, scheduler=noise_scheduler(space.teacher),
                                     device=device, dtype=dtype)
    evaluator = DistillationEvaluator(supernet, validation, surrogates_id=f"{space_fingerprint(space)}:{surrogates_id}")
    return ExpensiveEvaluation([evaluator], config.eval_budget)


def build_runner(config: SearchConfig, out_dir: str | Path) -> SearchRunner:
    """Everything a search needs, from its config; the cost table is cached in ``out_dir``.

    On Ray, each actor builds its own evaluation once (:func:`expensive_evaluation`)."""
    resolve_dtype(config.dtype, resolve_device(config.device))  # refused before anything is written
    out_dir = Path(out_dir)
    space = search_spaces.load(config.space)
    executor = executor_from_config(config.executor)
    out_dir.mkdir(parents=True, exist_ok=True)
    teacher = load_teacher(space.teacher)
    table = cached_cost_table(teacher, space, out_dir)
    cheap = [CostEvaluator(table, max_gmacs=config.max_gmacs, max_params_m=config.max_params_m)]
    evaluation = expensive_evaluation(config, teacher, space)
    factory = functools.partial(expensive_evaluation, config) if executor.kind == "ray" else None
    return SearchRunner(config, out_dir, space=space, table=table, cheap=cheap, expensive=evaluation.evaluators,
                        executor=executor, evaluation_factory=factory)
