"""The pipeline stages an experiment can run, each writing one folder under the run folder.

A stage is a function ``stage(ctx) -> summary dict``; it reads its own config section from ``ctx.config`` and the
folders of the stages it depends on through ``ctx.require(name)``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..atomic import write_json, write_text
from ..errors import ConfigError
from .manifest import read_manifest

StageFn = Callable[["StageContext"], dict[str, Any]]


@dataclasses.dataclass
class StageContext:
    """What a stage sees: the resolved experiment config, the run folder, and its upstream stages."""

    config: Any  # ExperimentConfig
    run_dir: Path
    stage: str
    folders: dict[str, Path]  # every stage's folder (shared stages of a sweep live outside run_dir)

    @property
    def out(self) -> Path:
        return self.folders[self.stage]

    def has(self, upstream: str) -> bool:
        """Whether the upstream stage is part of this experiment or has run before."""
        return upstream in self.config.stages or self.folders[upstream].exists()

    def require(self, upstream: str) -> Path:
        """The folder of a finished upstream stage; a one-line error naming the stage to run when it is missing."""
        folder = self.folders[upstream]
        manifest = read_manifest(folder)
        if not manifest or manifest.get("status") != "complete":
            raise ConfigError(f"stage '{self.stage}' needs the output of stage '{upstream}', which has not run: "
                              f"add '{upstream}' to stages (or run it first)", source=self.run_dir, key="stages")
        return folder


STAGES: dict[str, StageFn] = {}
ORDER = ("surrogates", "search", "extract", "sr", "onestep", "evaluate", "report", "expansion")
STANDALONE = ("expansion",)  # stages that read no other stage's output and whose output no stage reads
REQUIRES = {"extract": ("search",), "sr": ("extract",), "onestep": ("sr",), "evaluate": ("onestep",),
            "report": ("search",)}  # upstream stages whose output a stage cannot run without


def check_stages(config: Any, folders: dict[str, Path], run_dir: Path) -> None:
    """Refuse, before anything is written, a stage whose required upstream stage neither runs before it nor ran,
    a search whose strategy, options or budget are bad, and a Ray address (surrogates or search) that does not
    answer."""
    from ..executors import check_address  # noqa: PLC0415

    stages = list(config.stages)
    for name in ("surrogates", "search"):
        section = getattr(config, name) if name in stages else None
        if section is not None and section.executor.kind == "ray":
            check_address(section.executor.address)
    if "search" in stages:
        import search_spaces  # noqa: PLC0415

        from ..search.runner import search_strategy  # noqa: PLC0415

        search_strategy(config.search, search_spaces.load(config.search.space), lambda arch: 0.0)
    if "expansion" in stages:
        from ..training.expansion_study import check_study  # noqa: PLC0415

        check_study(config.expansion, run_dir)
    for index, stage in enumerate(stages):
        for upstream in REQUIRES.get(stage, ()):
            manifest = read_manifest(folders[upstream])
            if upstream not in stages[:index] and not (manifest and manifest.get("status") == "complete"):
                raise ConfigError(f"stage '{stage}' needs the output of stage '{upstream}', which has not run: "
                                  f"add '{upstream}' to stages (or run it first)", source=run_dir, key="stages")


def stage(name: str) -> Callable[[StageFn], StageFn]:
    def register(fn: StageFn) -> StageFn:
        STAGES[name] = fn
        return fn

    return register


@stage("surrogates")
def surrogates_stage(ctx: StageContext) -> dict[str, Any]:
    from ..distill.run import distill_blocks  # noqa: PLC0415

    report = distill_blocks(ctx.config.surrogates, ctx.out)
    failed = report.counts().get("failed", 0)
    if failed:
        raise ConfigError(f"{failed} candidate(s) failed to distil; see {ctx.out}", source=ctx.out)
    return report.to_json()


@stage("search")
def search_stage(ctx: StageContext) -> dict[str, Any]:
    from ..search.components import build_runner  # noqa: PLC0415

    config = ctx.config.search
    if config.surrogates is None and ctx.has("surrogates"):
        config = config.model_copy(update={"surrogates": str(ctx.require("surrogates"))})
    frame = build_runner(config, ctx.out).run(progress=True)
    return {"trials": len(frame), "complete": int((frame.state == "complete").sum()) if len(frame) else 0}


@stage("extract")
def extract_stage(ctx: StageContext) -> dict[str, Any]:
    from ..search.components import extract_arch  # noqa: PLC0415
    from ..search.results import pick_trial, search_surrogates  # noqa: PLC0415

    search = ctx.require("search")
    picked = pick_trial(search, ctx.config.extract.eps)
    arch = extract_arch(ctx.config.search.space, picked.arch, search_surrogates(search), ctx.out / "compact")
    summary = {"arch": str(arch), "arch_id": arch.arch_id, **{k: float(picked[k]) for k in
               ("loss", "gmacs", "params_m", "params_ratio", "macs_ratio")}}
    write_json(ctx.out / "winner.json", summary)
    return summary


@stage("report")
def report_stage(ctx: StageContext) -> dict[str, Any]:
    from analysis.report import build_report  # noqa: PLC0415

    path = build_report(ctx.run_dir, out=ctx.out, eps=ctx.config.search.eps)
    return {"report": str(path)}


@stage("expansion")
def expansion_stage(ctx: StageContext) -> dict[str, Any]:
    """The latent expansion study: 4-channel vs expanded vs from-scratch 16-channel teacher at equal steps."""
    from ..training.expansion_study import run_study, summary  # noqa: PLC0415

    return summary(run_study(ctx.config.expansion, ctx.out))


@stage("sr")
def sr_stage(ctx: StageContext) -> dict[str, Any]:
    """SR adaptation of the extracted compact UNet."""
    from ..sr.train import run_sr_adapt  # noqa: PLC0415

    compact = ctx.require("extract") / "compact"
    recipe = ctx.config.sr.model_copy(update={"backbone": ctx.config.sr.backbone.model_copy(
        update={"compact": str(compact), "arch": None})})
    return run_sr_adapt(recipe, ctx.out)


@stage("onestep")
def onestep_stage(ctx: StageContext) -> dict[str, Any]:
    """One-step distillation of the SR diffusion model."""
    from ..sr.train import MODEL_DIR, run_sr_onestep  # noqa: PLC0415

    recipe = ctx.config.onestep.model_copy(update={"init": str(ctx.require("sr") / MODEL_DIR)})
    return run_sr_onestep(recipe, ctx.out)


@stage("evaluate")
def evaluate_stage(ctx: StageContext) -> dict[str, Any]:
    """PSNR/SSIM (Y) of the one-step and multi-step SR models beside bicubic, the VAE ceiling and ``models``
    (other SR models, e.g. the shipped x4-compact, on the same images); latency of the run's own models."""
    from ..data.images import resolve_image_files  # noqa: PLC0415
    from ..sr.evaluate import (  # noqa: PLC0415
        evaluate_files,
        markdown_table,
        measure_latency,
        model_method,
        reference_methods,
        summarize,
        write_csv,
    )
    from ..sr.model import load_sr_model  # noqa: PLC0415
    from ..sr.shipped import resolve_sr_model  # noqa: PLC0415
    from ..sr.train import MODEL_DIR  # noqa: PLC0415

    config = ctx.config.evaluate
    onestep = load_sr_model(ctx.require("onestep") / MODEL_DIR, kind="sr-onestep")
    methods = reference_methods(onestep.scale, onestep.vae)
    methods["onestep"] = model_method(onestep)
    if config.diffusion_steps:
        diffusion = load_sr_model(ctx.require("sr") / MODEL_DIR, kind="sr-diffusion")
        methods[f"diffusion-{config.diffusion_steps}"] = model_method(diffusion, steps=config.diffusion_steps)
    for spec in config.models:  # other models on the same images (the shipped x4-compact by default)
        other = load_sr_model(resolve_sr_model(spec, key="evaluate.models"))
        methods[spec] = model_method(other, steps=config.diffusion_steps or 10)
    rows = []
    for data in config.data:
        rows += evaluate_files(methods, resolve_image_files(data), onestep.scale, dataset=Path(data).name,
                               max_side=config.max_side)
    summary = summarize(rows)
    write_csv(ctx.out / "per_image.csv", rows)
    write_csv(ctx.out / "summary.csv", summary)
    write_text(ctx.out / "summary.md", markdown_table(summary) + "\n")
    latency = {"onestep_s": measure_latency(onestep, config.latency_size, repeats=2)}
    if config.diffusion_steps:
        latency[f"diffusion_{config.diffusion_steps}_s"] = measure_latency(diffusion, config.latency_size,
                                                                            steps=config.diffusion_steps, repeats=2)
    write_json(ctx.out / "latency.json", latency)
    return {"summary": summary, "latency": latency}
