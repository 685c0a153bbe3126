"""The search runner and store: crash safety, failing evaluators, resumption, CLI, and bad input."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from evaluators import make_evaluator
from evaluators.base import Evaluator
from evaluators.cost import CostEvaluator
from evaluators.distillation import DistillationEvaluator, ValidationSet
from tocsr_nas.cli import main
from tocsr_nas.errors import ConfigError
from tocsr_nas.profiling.cost_table import build_cost_table
from tocsr_nas.search import SearchConfig, SearchRunner, read_trials
from tocsr_nas.search.components import validation_latents
from tocsr_nas.search.config import ValidationConfig
from tocsr_nas.supernet import Supernet

from .conftest import write_space

GAUSSIAN = {"latents": {"source": "gaussian"}, "count": 4, "batch_size": 2}


@pytest.fixture(scope="module")
def parts(micro_teacher, micro_space):
    table = build_cost_table(micro_teacher, micro_space, ptflops=False, progress=False)
    latents = validation_latents(micro_teacher, ValidationConfig(**GAUSSIAN), 16)
    validation = ValidationSet.build(micro_teacher, latents, batch_size=2)
    distillation = DistillationEvaluator(Supernet(micro_teacher, micro_space), validation)
    return table, [CostEvaluator(table)], [distillation]


def runner(parts, micro_space, out, **config):
    table, cheap, expensive = parts
    config = SearchConfig(space=str(micro_space.source), validation=GAUSSIAN, **config)
    return SearchRunner(config, out, space=micro_space, table=table, cheap=cheap, expensive=expensive)


def test_distillation_loss_is_zero_for_the_teacher(parts, micro_space):
    _, _, (distillation,) = parts
    assert distillation.evaluate(micro_space.teacher_arch()) == {"loss": 0.0, "mse": 0.0}
    student = distillation.evaluate(micro_space.arch({"down:A": "I", "up:R": "slim(width=0.5)"}))
    assert student["loss"] > 0 and math.isfinite(student["loss"])


def test_search_stores_every_trial_and_resumes(parts, micro_space, tmp_path):
    frame = runner(parts, micro_space, tmp_path, strategy="random", budget=5).run(progress=False)
    assert list(frame.trial_id) == list(range(5)) and frame.arch_id.is_unique
    assert set(frame.state) == {"complete"} and (frame.loss >= 0).all()
    more = runner(parts, micro_space, tmp_path, strategy="random", budget=8).run(progress=False)
    assert list(more.trial_id) == list(range(8)) and more.arch_id.is_unique
    assert more.iloc[:5].equals(frame)  # the first five are untouched


def test_infeasible_trials_are_recorded_but_not_counted(parts, micro_space, tmp_path):
    table, _, expensive = parts
    limit = table.teacher_total.gmacs * 0.6
    config = SearchConfig(space=str(micro_space.source), strategy="random", budget=4, max_gmacs=limit, validation=GAUSSIAN)
    frame = SearchRunner(config, tmp_path, space=micro_space, table=table, cheap=[CostEvaluator(table, max_gmacs=limit)],
                         expensive=expensive).run(progress=False)
    assert (frame.state != "infeasible").sum() == 4
    assert (frame[frame.state == "infeasible"].gmacs > limit).all()
    assert "loss" not in frame[frame.state == "infeasible"].dropna(axis=1, how="all")


class FlakyEvaluator(Evaluator):
    """Raises on every third call and returns NaN on every third-plus-one: a test double for a broken metric."""

    name = "flaky"

    def __init__(self) -> None:
        self.calls = 0

    def evaluate(self, arch, budget=None):
        self.calls += 1
        if self.calls % 3 == 0:
            raise RuntimeError("simulated out-of-memory")
        return {"loss": float("nan") if self.calls % 3 == 1 else 0.5}


def test_failing_evaluator_marks_trials_failed_and_goes_on(parts, micro_space, tmp_path):
    table, cheap, _ = parts
    config = SearchConfig(space=str(micro_space.source), strategy="random", budget=6, validation=GAUSSIAN)
    frame = SearchRunner(config, tmp_path, space=micro_space, table=table, cheap=cheap,
                         expensive=[FlakyEvaluator()]).run(progress=False)
    assert len(frame) == 6
    failed = frame[frame.state == "failed"]
    assert len(failed) == 4 and (frame[frame.state == "complete"].loss == 0.5).all()
    assert failed.error.str.contains("simulated out-of-memory").sum() == 2
    assert failed.error.str.contains("non-finite").sum() == 2


def test_store_of_another_space_is_refused(parts, micro_space, micro_teacher, tmp_path):
    runner(parts, micro_space, tmp_path, strategy="random", budget=1).run(progress=False)
    import search_spaces

    other = search_spaces.load(write_space(tmp_path, """
name: other
teacher: {teacher}
candidates: {resnet: [teacher, identity]}
stages: [{name: down, units: ["down_blocks.*"]}]
""", "other.yaml"))
    table = build_cost_table(micro_teacher, other, ptflops=False, progress=False)
    config = SearchConfig(space=str(other.source), strategy="random", budget=1, validation=GAUSSIAN)
    with pytest.raises(ConfigError, match=r"trials.jsonl: space changed \(micro -> other\): this folder holds another search"):
        SearchRunner(config, tmp_path, space=other, table=table, cheap=[CostEvaluator(table)], expensive=[])


@pytest.mark.parametrize(("fields", "expected"), [
    ({"eps": [-0.1]}, r"eps: Value error, epsilon -0.1 out of range"),
    ({"eps": 11}, r"eps: Value error, epsilon 11.0 out of range"),
    ({"budget": 0}, r"budget: Input should be greater than 0"),
    ({"strategy": "annealing"}, r"unknown strategy 'annealing' \(allowed: .*bo.*random"),
])
def test_bad_search_config(parts, micro_space, tmp_path, fields, expected):
    with pytest.raises(ConfigError, match=expected):
        from tocsr_nas.config_io import validate

        config = validate(SearchConfig, {"space": str(micro_space.source), **fields}, source="search.yaml")
        table, cheap, expensive = parts
        SearchRunner(config, tmp_path, space=micro_space, table=table, cheap=cheap, expensive=expensive)


def test_budget_below_initial_design_is_refused(parts, micro_space, tmp_path):
    with pytest.raises(ConfigError, match=r"budget: budget 2 is smaller than strategy 'bo' needs"):
        runner(parts, micro_space, tmp_path, strategy="bo", budget=2)


def test_unknown_evaluator_lists_registered():
    with pytest.raises(ConfigError, match=r"unknown evaluator 'fid' \(allowed: cost, distillation, generation, latency, sr-proxy\)"):
        make_evaluator("fid")


def test_sigkill_mid_search_then_resume(micro_space_path, tmp_path):
    """Kill a search subprocess with SIGKILL mid-run, resume it, and prove no trial was lost or repeated."""
    config = tmp_path / "search.yaml"
    config.write_text(json.dumps({"space": str(micro_space_path), "strategy": "evolution", "budget": 14,
                                  "validation": GAUSSIAN, "strategy_options": {"population_size": 4, "sample_size": 2}}))
    out = tmp_path / "search"
    command = [sys.executable, "-m", "tocsr_nas", "search", "--config", str(config), "--out", str(out), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trials = out / "trials.jsonl"
    deadline = time.time() + 600  # generous: a loaded shared machine starts the subprocess slowly
    while time.time() < deadline and process.poll() is None and (
            not trials.exists() or trials.read_text().count("\n") < 5):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = trials.read_text().count("\n") - 1
    assert 4 <= killed_at < 14, "the search must be killed mid-run"
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    frame = read_trials(out)
    assert list(frame.trial_id) == list(range(len(frame)))
    assert frame.arch_id.is_unique
    assert (frame.state != "infeasible").sum() == 14


def test_pareto_and_extract_cli(parts, micro_space, tmp_path, capsys):
    runner(parts, micro_space, tmp_path / "s", strategy="random", budget=6, eps=[1.0]).run(progress=False)
    assert main(["pareto", str(tmp_path / "s"), "--json"]) == 0
    front = json.loads(capsys.readouterr().out)
    assert front and all(row["state"] == "complete" for row in front)
    gmacs = [row["gmacs"] for row in front]
    losses = [row["loss"] for row in front]
    assert gmacs == sorted(gmacs) and losses == sorted(losses, reverse=True)  # a front: cheaper is worse
    assert main(["extract", str(tmp_path / "s"), "--pick", "best", "--out", str(tmp_path / "compact")]) == 0
    picked = json.loads(capsys.readouterr().out.splitlines()[-1])  # extract's last line is machine-readable
    within = [row for row in front if row["loss"] <= 1.0]  # eps = 1.0: the cheapest trial within it is on the front
    assert picked["arch_id"] == min(within, key=lambda r: r["gmacs"])["arch_id"]
    assert (tmp_path / "compact" / "diffusion_pytorch_model.safetensors").is_file()


def test_batches_evaluate_in_parallel_on_ray(parts, micro_space, tmp_path):
    """The same search, its batches evaluated by two Ray workers, stores the same trials as a local run."""
    from tocsr_nas.executors import make_executor

    table, cheap, expensive = parts
    config = SearchConfig(space=str(micro_space.source), strategy="random", budget=4, batch_size=2, validation=GAUSSIAN)
    local = SearchRunner(config, tmp_path / "local", space=micro_space, table=table, cheap=cheap,
                         expensive=expensive).run(progress=False)
    remote = SearchRunner(config, tmp_path / "ray", space=micro_space, table=table, cheap=cheap, expensive=expensive,
                          executor=make_executor("ray", num_workers=2)).run(progress=False)
    assert list(remote.arch_id) == list(local.arch_id)
    assert list(remote.batch) == [0, 0, 1, 1]
    assert remote.loss.tolist() == pytest.approx(local.loss.tolist(), rel=1e-5)
