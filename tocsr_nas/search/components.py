"""Assembling a search from its config: space, teacher, cost table, supernet with surrogates, evaluators."""
from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch

import search_spaces
from evaluators import Evaluator, make_evaluator
from evaluators.context import EvaluationContext
from evaluators.distillation import ValidationSet

from ..arch import Arch
from ..device import autocast, resolve_device, resolve_dtype
from ..distill.inputs import build_latent_source, noise_scheduler
from ..errors import ConfigError
from ..executors import executor_from_config
from ..locking import FolderLock
from ..profiling.cost_table import CostTable, build_cost_table, space_fingerprint
from ..supernet import Supernet
from ..teachers import Teacher, load_teacher
from .config import SearchConfig, ValidationConfig
from .runner import ExpensiveEvaluation, SearchRunner, check_search_folder, search_strategy

logger = logging.getLogger(__name__)
COST_TABLE_FILE = "cost_table.json"


def cached_cost_table(teacher: Teacher, space: search_spaces.SearchSpace, folder: Path) -> tuple[CostTable, bool]:
    """The space's cost table from ``folder/cost_table.json`` (or built when missing or stale); True when built.

    Nothing is written here: the caller saves a built table once it holds the folder.
    """
    path = folder / COST_TABLE_FILE
    if path.is_file():
        try:
            return CostTable.load(path, space), False
        except ConfigError:
            logger.warning("%s is for another space: rebuilding it", path)
    return build_cost_table(teacher, space, ptflops=False, progress=False), True


def validation_latents(teacher: Teacher, config: ValidationConfig, latent_size: int) -> torch.Tensor:
    """Clean latents of the validation set: the held-out stream of the configured latent source."""
    source = build_latent_source(config.latents, teacher, latent_size, length=config.count, seed=config.seed,
                                 held_out=True)
    return source.latents(list(range(config.count)))


def trained_supernet(teacher: Teacher, space: search_spaces.SearchSpace, surrogates: str | Path | None) -> Supernet:
    """The supernet of ``space`` with the candidates trained in the ``surrogates`` folder (initial ones without).

    Initial weights are drawn from a fixed seed, so untrained candidates measure the same in every process.
    """
    with torch.random.fork_rng():
        torch.manual_seed(0)
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


def run_compact_once(folder: str | Path, device: torch.device, dtype: torch.dtype, latent_size: int | None) -> float:
    """Load the compact UNet saved in ``folder`` and run one denoising call on ``device`` under ``dtype`` autocast.

    Random latents (side ``latent_size``, default the UNet's ``sample_size``) and a random 77-token context;
    returns the seconds the call took. A non-finite or wrongly shaped output is a :class:`ConfigError`.
    """
    import time  # noqa: PLC0415

    from ..compact import CompactUNet  # noqa: PLC0415

    unet = CompactUNet.from_pretrained(folder).to(device).eval()
    side = latent_size or int(unet.config.sample_size)
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, unet.config.in_channels, side, side, generator=generator).to(device)
    context = torch.randn(1, 77, unet.config.cross_attention_dim, generator=generator).to(device)
    start = time.perf_counter()
    with torch.no_grad(), autocast(device, dtype):
        out = unet(latents, torch.tensor([500], device=device), encoder_hidden_states=context).sample
    seconds = time.perf_counter() - start
    if out.shape != (1, unet.config.out_channels, side, side) or not torch.isfinite(out.float()).all():
        raise ConfigError(f"the compact UNet gave a {'non-finite' if out.shape == latents.shape else 'misshaped'} "
                          f"output {tuple(out.shape)}", source=folder)
    return seconds


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


def evaluation_context(config: SearchConfig, out_dir: Path, space: search_spaces.SearchSpace, teacher: Teacher,
                       surrogates_id: str = "untrained", built: list[CostTable] | None = None) -> EvaluationContext:
    """What the search's evaluators are built from; the cost table, supernet and validation set are built lazily.

    ``surrogates_id`` is the surrogates' content hash; a cost table built (not read from ``out_dir``) is appended
    to ``built`` for the caller to save once it holds the folder. The validation set lives on ``config.device`` and
    the teacher (and the scored students) run under autocast in ``config.dtype``.
    """
    latent_size = config.latent_size or space.latent_size or teacher.latent_size
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)

    def cost_table() -> CostTable:
        table, new = cached_cost_table(teacher, space, out_dir)
        if new and built is not None:
            built.append(table)
        return table

    def validation() -> ValidationSet:
        latents = validation_latents(teacher, config.validation, latent_size)
        return ValidationSet.build(teacher, latents, batch_size=config.validation.batch_size,
                                   seed=config.validation.seed, scheduler=noise_scheduler(space.teacher),
                                   device=device, dtype=dtype)

    return EvaluationContext(
        space=space, teacher=teacher, cache_dir=out_dir, constraints=config.constraints,
        shared={"cost_table": cost_table,
                "supernet": lambda: trained_supernet(teacher, space, config.surrogates),
                "validation": validation},
        surrogates_id=f"{space_fingerprint(space)}:{surrogates_id}")


def build_evaluators(config: SearchConfig, context: EvaluationContext) -> list[Evaluator]:
    """The evaluators the config names, built through the registry with their options, in order."""
    evaluators = []
    for spec in config.effective_evaluators:
        try:
            evaluators.append(make_evaluator(spec.name, context=context, **spec.options))
        except TypeError as err:  # an option the factory does not take
            raise ConfigError(f"evaluator '{spec.name}': {err}", key="evaluators") from err
    return evaluators


def expensive_evaluation(config: SearchConfig, out_dir: str | Path) -> ExpensiveEvaluation:
    """The expensive evaluators of ``config``, wrapped for the runner: what a Ray actor builds once (it loads the
    teacher, the supernet with its surrogates and the validation set itself; cached tables come from ``out_dir``)."""
    from ..distill.store import surrogates_hash  # noqa: PLC0415

    space = search_spaces.load(config.space)
    surrogates_id = surrogates_hash(config.surrogates) if config.surrogates else "untrained"
    context = evaluation_context(config, Path(out_dir), space, load_teacher(space.teacher), surrogates_id)
    expensive = [e for e in build_evaluators(config, context) if not e.cheap]
    return ExpensiveEvaluation(expensive, config.eval_budget, config.objectives[0])


def build_runner(config: SearchConfig, out_dir: str | Path) -> SearchRunner:
    """Everything a search needs, from its config; tables measured once (cost, latency) are cached in ``out_dir``.

    Every input is validated (device and dtype, space, strategy and options, budget, surrogates, a Ray address, the
    folder's provenance) before anything is written; the returned runner holds the folder's lock until it has run.
    On Ray, each actor builds its own expensive evaluators once (:func:`expensive_evaluation`).
    """
    from ..distill.store import surrogates_hash, teacher_hash  # noqa: PLC0415

    resolve_dtype(config.dtype, resolve_device(config.device))
    out_dir = Path(out_dir)
    check_search_folder(out_dir)
    FolderLock(out_dir).check()
    space = search_spaces.load(config.space)
    search_strategy(config, space, lambda arch: 0.0)  # options and budget, before any slow work
    surrogates_id = surrogates_hash(config.surrogates) if config.surrogates else "untrained"
    executor = executor_from_config(config.executor)  # a Ray address that does not answer: nothing written
    teacher = load_teacher(space.teacher)
    built: list[CostTable] = []
    context = evaluation_context(config, out_dir, space, teacher, surrogates_id, built)
    evaluators = build_evaluators(config, context)
    provenance = {"teacher_hash": teacher_hash(teacher.unet, space), "surrogates_hash": surrogates_id,
                  "latent_size": config.latent_size or space.latent_size or teacher.latent_size}
    factory = functools.partial(expensive_evaluation, config, out_dir) if executor.kind == "ray" else None
    runner = SearchRunner(config, out_dir, space=space, table=context.get("cost_table"),
                          cheap=[e for e in evaluators if e.cheap], expensive=[e for e in evaluators if not e.cheap],
                          executor=executor, evaluation_factory=factory, provenance=provenance)
    for table in built:  # saved once the runner holds the folder
        table.save(out_dir / COST_TABLE_FILE)
    return runner
