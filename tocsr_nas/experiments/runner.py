"""Running an experiment YAML: resolve config (base, overrides, sweep), then run its stages in order.

Every stage writes ``runs/<name>[/<sweep point>]/<stage>/`` with a manifest; a stage whose manifest is complete
with the same hash (its config section plus the output hashes of the finished upstream stages) is skipped, so a
killed run resumes at the first unfinished stage and a stage whose inputs changed reruns with all that follows.
A stale stage folder the runner made itself (it holds a ``stage.json`` with another hash) is cleared before the
stage reruns; a folder it did not make is never touched. One process at a time writes a run folder (locks).
Input that can only be checked inside a stage (a distillation memory budget, known once a step is probed) is
refused there before the stage writes anything; the stage folder and run folders this call made then go again.
"""
from __future__ import annotations

import copy
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config_io import validate
from ..errors import ConfigError
from ..locking import folder_lock
from ..plugins import load_config_plugins
from .config import (
    expand_sweep,
    flatten,
    load_experiment,
    parse_overrides,
    run_suffix,
    set_dotted,
)
from .manifest import (
    MANIFEST,
    config_hash,
    is_complete,
    output_hash,
    read_manifest,
    write_manifest,
)
from .schema import ExperimentConfig
from .stages import ORDER, STAGES, STANDALONE, StageContext, check_stages

logger = logging.getLogger(__name__)


def resolve(path: str | Path, overrides: Sequence[str] = ()) -> list[tuple[str, ExperimentConfig]]:
    """The runs of an experiment file: ``(run suffix, config)`` per sweep point (one run without a sweep)."""
    source = str(path)
    raw = load_experiment(path)
    load_config_plugins(raw, source=source)
    known = set(flatten(validate(ExperimentConfig, raw, source=source).model_dump(mode="json")))
    known |= {k for k in flatten(raw)}
    for key, value in parse_overrides(list(overrides)):
        set_dotted(raw, key, value, known=known, source="command line")
    sweep = raw.pop("sweep", {}) or {}
    if not sweep:
        return [("", validate(ExperimentConfig, raw, source=source))]
    runs = []
    for point in expand_sweep(sweep, source):
        data = copy.deepcopy(raw)
        for key, value in point.items():
            set_dotted(data, key, value, known=known, source=f"{source}: sweep")
        runs.append((run_suffix(point), validate(ExperimentConfig, data, source=source)))
    return runs


def stage_folders(runs: list[tuple[str, ExperimentConfig]], root: Path) -> list[tuple[Path, dict[str, Path]]]:
    """Each run's folder and its stage folders. A stage whose config is the same in every run of a sweep (e.g. the
    surrogates when only the search strategy is swept) gets one folder, ``root/<stage>``, shared by all runs."""
    result = []
    for suffix, config in runs:
        run_dir = root / suffix if suffix else root
        folders = {}
        for stage in config.stages:
            shared = len(runs) > 1 and all(stage in c.stages and stage_config(c, stage) == stage_config(config, stage)
                                           for _, c in runs)
            folders[stage] = root / stage if shared else run_dir / stage
        result.append((run_dir, folders))
    return result


def stage_config(config: ExperimentConfig, stage: str) -> dict[str, Any]:
    """The part of the config a stage's output depends on (its section plus what upstream stages used)."""
    dump = config.model_dump(mode="json")
    if stage in STANDALONE:
        return {"space": dump["space"], "seed": dump["seed"], stage: dump[stage]}
    upstream = [s for s in ORDER[: ORDER.index(stage) + 1] if s not in STANDALONE]
    return {"space": dump["space"], "seed": dump["seed"], **{s: dump[s] for s in upstream if s in dump}}


def upstream_outputs(stage: str, folders: dict[str, Path]) -> dict[str, str]:
    """The recorded output hashes of the finished stages before ``stage`` (what it may have read)."""
    found: dict[str, str] = {}
    if stage in STANDALONE:
        return found
    for upstream in ORDER[: ORDER.index(stage)]:
        manifest = read_manifest(folders[upstream])
        if manifest and manifest.get("status") == "complete" and manifest.get("output_hash"):
            found[upstream] = manifest["output_hash"]
    return found


def prepare_stage_folder(folder: Path, stage: str, key: dict[str, Any]) -> None:
    """Clear a stale folder this runner made (a ``stage.json`` with another hash); refuse one it did not make."""
    manifest = read_manifest(folder)
    if manifest is not None:
        if manifest.get("stage") != stage:
            raise ConfigError(f"holds stage '{manifest.get('stage')}', not '{stage}'", source=folder / MANIFEST)
        if manifest.get("status") == "running" and manifest.get("config_hash") == config_hash(key):
            return  # the same stage killed midway: it resumes from what is there
        logger.warning("stage %s: inputs changed since %s was made: clearing it", stage, folder)
        shutil.rmtree(folder)
    elif folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(f"exists but was not made by the experiment runner (no {MANIFEST}): move it away or "
                          "use another --runs-dir", source=folder)


def _forget_refused(folder: Path, fresh: bool) -> None:
    """A stage this call made that refused its input before writing anything but its manifest leaves no folder."""
    if fresh and [p.name for p in folder.iterdir()] == [MANIFEST]:
        shutil.rmtree(folder)


def run_experiment(config: ExperimentConfig, run_dir: str | Path,
                   folders: dict[str, Path] | None = None) -> dict[str, Any]:
    """Run (or resume) every stage of ``config`` in ``run_dir``; returns ``{stage: {seconds, skipped, summary}}``.

    ``folders`` maps stages to folders outside ``run_dir`` (stages shared by the runs of a sweep). The run folder
    and each stage folder are locked while written.
    """
    run_dir = Path(run_dir)
    folders = {stage: Path(folders[stage]) if folders and stage in folders else run_dir / stage for stage in ORDER}
    results: dict[str, Any] = {}
    check_stages(config, folders, run_dir)
    made = next((p for p in reversed([run_dir, *run_dir.parents]) if not p.exists()), None)
    try:
        _run_stages(config, run_dir, folders, results)
    except ConfigError:  # refused input: the folders this call made and left empty go too
        if made is not None and made.exists() and not any(p.is_file() for p in made.rglob("*")):
            shutil.rmtree(made)
        raise
    return results


def _run_stages(config: ExperimentConfig, run_dir: Path, folders: dict[str, Path], results: dict[str, Any]) -> None:
    with folder_lock(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
        for stage in config.stages:
            folder = folders[stage]
            section = stage_config(config, stage)
            key = {"config": section, "upstream": upstream_outputs(stage, folders)}
            if is_complete(folder, key):
                logger.info("stage %s: up to date, skipped", stage)
                results[stage] = {"skipped": True, "seconds": 0.0}
                continue
            fresh = not folder.exists()
            with folder_lock(folder):
                prepare_stage_folder(folder, stage, key)
                write_manifest(folder, stage, key, config.seed, status="running")
                start = time.perf_counter()
                try:
                    summary = STAGES[stage](StageContext(config=config, run_dir=run_dir, stage=stage, folders=folders))
                except ConfigError:
                    _forget_refused(folder, fresh)
                    raise
                seconds = time.perf_counter() - start
                write_manifest(folder, stage, key, config.seed, status="complete", seconds=seconds, summary=summary,
                               output_hash=output_hash(folder))
            results[stage] = {"skipped": False, "seconds": seconds, "summary": summary}


def check_run_count(runs: list[tuple[str, ExperimentConfig]], yes: bool) -> None:
    limit = runs[0][1].max_runs
    if len(runs) > limit and not yes:
        raise ConfigError(f"the sweep expands to {len(runs)} runs (more than max_runs={limit}): pass --yes to run them",
                          key="sweep")
