"""Experiment runner: base inheritance, overrides, sweeps, resumable stages, and clear errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from tocsr_nas.errors import ConfigError
from tocsr_nas.experiments import check_run_count, resolve, run_experiment

EXPERIMENTS = sorted((Path(__file__).parents[1] / "experiments").glob("*.yaml"))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def micro_experiment(tmp_path, micro_space_path):
    return write(tmp_path, "micro.yaml", f"""
name: micro
space: {micro_space_path}
stages: [surrogates, search, extract]
surrogates: {{steps: 4, batch_size: 2, num_threads: 1, held_out_samples: 2}}
search: {{strategy: random, budget: 3, eps: [1.0], validation: {{latents: {{source: gaussian}}, count: 4, batch_size: 2}}}}
""")


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.name for p in EXPERIMENTS])
def test_shipped_experiments_validate(path):
    runs = resolve(path)
    assert runs and all(config.stages for _, config in runs)


def test_base_overrides_and_sweep(tmp_path):
    write(tmp_path, "base.yaml", "name: base\nstages: [search]\nsearch: {budget: 50, strategy: random}\n")
    child = write(tmp_path, "child.yaml", "base: base.yaml\nname: child\nsearch: {budget: 10}\n"
                                          "sweep: {seed: [0, 1], search.strategy: [random, bo]}\n")
    runs = resolve(child, ["search.batch_size=2"])
    assert [suffix for suffix, _ in runs] == ["seed=0,search.strategy=random", "seed=0,search.strategy=bo",
                                             "seed=1,search.strategy=random", "seed=1,search.strategy=bo"]
    for suffix, config in runs:
        assert config.name == "child" and config.search.budget == 10 and config.search.batch_size == 2
        assert config.search.seed == config.seed  # the top-level seed reaches the stages
        assert f"search.strategy={config.search.strategy}" in suffix


def test_sweep_is_replaced_by_an_override():
    """benchmarks/ablations.py sizes sweeps this way (fewer seeds, other steps)."""
    path = Path(__file__).parents[1] / "experiments" / "compare_strategies.yaml"
    runs = resolve(path, ["sweep={search.strategy: [random, bo], search.seed: [0, 1]}", "latent_size=16"])
    assert [suffix for suffix, _ in runs] == ["search.strategy=random,search.seed=0", "search.strategy=random,search.seed=1",
                                             "search.strategy=bo,search.seed=0", "search.strategy=bo,search.seed=1"]
    assert all(config.surrogates.latent_size == config.search.latent_size == 16 for _, config in runs)


def test_unknown_override_lists_close_matches(tmp_path):
    path = write(tmp_path, "e.yaml", "name: e\nstages: [search]\n")
    with pytest.raises(ConfigError, match=r"unknown key 'search.budgte' \(allowed: did you mean search.budget"):
        resolve(path, ["search.budgte=3"])


def test_large_sweep_needs_yes(tmp_path):
    path = write(tmp_path, "e.yaml", "name: e\nstages: [search]\nmax_runs: 3\nsweep: {seed: [0, 1, 2, 3]}\n")
    runs = resolve(path)
    with pytest.raises(ConfigError, match=r"sweep expands to 4 runs \(more than max_runs=3\): pass --yes"):
        check_run_count(runs, yes=False)
    check_run_count(runs, yes=True)


def test_missing_upstream_stage_is_named(tmp_path, micro_space_path):
    path = write(tmp_path, "e.yaml", f"name: e\nspace: {micro_space_path}\nstages: [extract]\n")
    (_, config), = resolve(path)
    with pytest.raises(ConfigError, match=r"stage 'extract' needs the output of stage 'search', which has not run"):
        run_experiment(config, tmp_path / "run")


def test_unknown_stage(tmp_path):
    path = write(tmp_path, "e.yaml", "name: e\nstages: [search, polish]\n")
    with pytest.raises(ConfigError, match=r"stages: Value error, unknown stage\(s\) \['polish'\]"):
        resolve(path)


def test_pipeline_runs_and_resumes(micro_experiment, tmp_path):
    (_, config), = resolve(micro_experiment)
    first = run_experiment(config, tmp_path / "run")
    assert all(not r["skipped"] for r in first.values())
    assert (tmp_path / "run" / "extract" / "compact" / "diffusion_pytorch_model.safetensors").is_file()
    second = run_experiment(config, tmp_path / "run")
    assert all(r["skipped"] for r in second.values())
    (_, changed), = resolve(micro_experiment, ["search.budget=4"])
    third = run_experiment(changed, tmp_path / "run")
    assert third["surrogates"]["skipped"] and not third["search"]["skipped"] and not third["extract"]["skipped"]


def test_retrained_surrogates_rerun_everything_downstream(micro_experiment, tmp_path):
    """The surrogates stage retrained (another config): search and extract rerun on the new surrogates, never
    returning trials measured with the old ones."""
    from tocsr_nas.distill.store import surrogates_hash
    from tocsr_nas.search.store import read_header

    (_, config), = resolve(micro_experiment, ["stages=[surrogates, search]"])
    run_experiment(config, tmp_path / "run")
    old = read_header(tmp_path / "run" / "search")["provenance"]["surrogates_hash"]
    (_, retrained), = resolve(micro_experiment, ["stages=[surrogates, search]", "surrogates.steps=5"])
    results = run_experiment(retrained, tmp_path / "run")
    assert not results["surrogates"]["skipped"] and not results["search"]["skipped"]
    new = read_header(tmp_path / "run" / "search")["provenance"]["surrogates_hash"]
    assert new == surrogates_hash(tmp_path / "run" / "surrogates") != old


def test_sweep_shares_stages_that_do_not_change(micro_experiment, tmp_path):
    from tocsr_nas.experiments import stage_folders

    runs = resolve(micro_experiment, ["sweep={search.seed: [0, 1]}", "stages=[surrogates, search]"])
    folders = stage_folders(runs, tmp_path / "micro")
    (first_dir, first), (second_dir, second) = folders
    assert first["surrogates"] == second["surrogates"] == tmp_path / "micro" / "surrogates"
    assert first["search"] == first_dir / "search" != second["search"]
    assert [config.search.seed for _, config in runs] == [0, 1]
    assert all(config.surrogates.seed == 0 for _, config in runs)  # the top-level seed, unchanged by the sweep
    for (_, config), (run_dir, stage_dirs) in zip(runs, folders):
        run_experiment(config, run_dir, stage_dirs)
    assert (tmp_path / "micro" / "surrogates" / "manifest.json").is_file()
    assert all((run_dir / "search" / "trials.jsonl").is_file() for run_dir, _ in folders)


def test_quickstart_smoke(tmp_path):
    """The README's main job, end to end on the shipped tiny-ldm teacher, with every budget cut to a few steps."""
    import numpy as np
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(images / "noise.png")
    overrides = [
        "surrogates.steps=2", "surrogates.held_out_samples=2", "search.strategy=random", "search.budget=2",
        "search.validation.count=2", "search.validation.batch_size=2", "search.eps=[10]",
        "sr.loop.steps=2", "sr.loop.batch_size=1", "sr.data.crop_size=64", "sr.loop.checkpoint_every=2",
        "onestep.loop.steps=2", "onestep.loop.batch_size=1", "onestep.data.crop_size=64", "onestep.teacher_steps=1",
        "onestep.loop.checkpoint_every=2", f"evaluate.data=[{images}]", "evaluate.diffusion_steps=1",
        "evaluate.latency_size=16",
    ]
    (_, config), = resolve(EXPERIMENTS[[p.name for p in EXPERIMENTS].index("quickstart.yaml")], overrides)
    results = run_experiment(config, tmp_path / "run")
    assert list(results) == ["surrogates", "search", "extract", "sr", "onestep", "evaluate", "report"]
    summary = (tmp_path / "run" / "evaluate" / "summary.csv").read_text()
    assert "onestep" in summary and "bicubic" in summary and "vae-recon" in summary
    assert "x4-compact" in summary  # the shipped model on the same images
    report = (tmp_path / "run" / "report" / "report.md").read_text()
    assert "pareto" in report.lower() and "summary" in report.lower()
    assert "| onestep |" in report.split("PSNR-Y gain over bicubic")[1]
