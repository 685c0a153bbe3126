"""Crash safety: ``search``, ``distill-blocks`` and ``run`` killed with SIGKILL at seeded random moments and resumed
end exactly where an uninterrupted run ends (trials, weights: bit for bit); two writers on one folder: the second is
refused and the first finishes intact.

The fast tests (default suite) kill each command once or twice; the ``slow`` ones kill every search strategy at
least five times.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

GAUSSIAN = {"latents": {"source": "gaussian"}, "count": 2, "batch_size": 2}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
STRATEGIES = {  # per strategy: options and a budget that makes the run long enough to be killed often
    "random": ({}, 12),
    "evolution": ({"population_size": 4, "sample_size": 2}, 12),
    "nsga2": ({"population_size": 4}, 12),
    "bo": ({"initial": 4}, 10),
}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tocsr_nas", *args]


def run_to_end(command: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def kill_and_resume(command: list[str], progress: Callable[[], int], targets: list[int], rng: random.Random) -> int:
    """Start ``command``; SIGKILL it once ``progress()`` reaches each target (plus a random delay), restarting after
    every kill; then run it to the end. Returns the number of real kills (the process was still running)."""
    kills = 0
    for target in targets:
        process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while process.poll() is None and progress() < target and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.4))  # anywhere: mid-evaluation, mid-write, between ask and store
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
    run_to_end(command)
    return kills


def line_count(path: Path) -> Callable[[], int]:
    return lambda: path.read_bytes().count(b"\n") - 1 if path.exists() else 0


def trials(folder: Path) -> list[dict]:
    """The stored trials without their timings (the only thing allowed to differ)."""
    rows = [json.loads(line) for line in (folder / "trials.jsonl").read_text().splitlines()[1:]]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def write_search_config(tmp_path: Path, space: Path, strategy: str, **extra: object) -> Path:
    options, budget = STRATEGIES[strategy]
    budget = extra.pop("budget", budget)
    path = tmp_path / f"{strategy}.yaml"
    path.write_text(json.dumps({"space": str(space), "strategy": strategy, "strategy_options": options,
                                "budget": budget, "validation": GAUSSIAN, **extra}))
    return path


def check_search_kills(tmp_path: Path, space: Path, strategy: str, kills: int, seed: int, **extra: object) -> int:
    config = write_search_config(tmp_path, space, strategy, **extra)
    reference, killed = tmp_path / f"{strategy}-ref", tmp_path / f"{strategy}-killed"
    run_to_end(cli("search", "--config", str(config), "--out", str(reference), "--quiet"))
    total = len(trials(reference))
    rng = random.Random(seed)
    targets = sorted(rng.sample(range(total), kills))
    done = kill_and_resume(cli("search", "--config", str(config), "--out", str(killed), "--quiet"),
                           line_count(killed / "trials.jsonl"), targets, rng)
    assert trials(killed) == trials(reference)
    return done


def test_search_killed_resumes_exactly(micro_space_path, tmp_path):
    """Evolution in batches of two (kills land between and inside batches) ends as the uninterrupted run."""
    assert check_search_kills(tmp_path, micro_space_path, "evolution", kills=2, seed=0, batch_size=2, budget=8) >= 1


@pytest.mark.slow
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_search_killed_five_times_resumes_exactly(micro_space_path, tmp_path, strategy):
    done = check_search_kills(tmp_path, micro_space_path, strategy, kills=6, seed=1)
    assert done >= 5, f"only {done} kills landed"


def test_second_writer_is_refused_and_first_finishes(micro_space_path, tmp_path):
    config = write_search_config(tmp_path, micro_space_path, "random", budget=6)
    reference, out = tmp_path / "ref", tmp_path / "out"
    run_to_end(cli("search", "--config", str(config), "--out", str(reference), "--quiet"))
    first = subprocess.Popen(cli("search", "--config", str(config), "--out", str(out), "--quiet"), env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    progress = line_count(out / "trials.jsonl")
    while first.poll() is None and progress() < 1:
        time.sleep(0.02)
    first.send_signal(signal.SIGSTOP)  # paused mid-search, still holding the folder
    try:
        second = subprocess.run(cli("search", "--config", str(config), "--out", str(out), "--quiet"), env=ENV,
                                capture_output=True, text=True, timeout=300, check=False)
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=300) == 0, first.stderr.read()
    assert second.returncode == 2
    errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"in use by pid {first.pid}" in errors[0] and "Traceback" not in second.stderr
    assert trials(out) == trials(reference)


def tensors_digest(path: Path) -> str:
    """sha256 of a safetensors file's tensors and metadata (its header's key order varies between processes)."""
    from tocsr_nas.atomic import read_safetensors

    tensors, metadata = read_safetensors(path)
    digest = hashlib.sha256(json.dumps(metadata, sort_keys=True).encode())
    for name in sorted(tensors):
        digest.update(f"{name}{tensors[name].dtype}{tuple(tensors[name].shape)}".encode())
        digest.update(tensors[name].contiguous().numpy().tobytes())
    return digest.hexdigest()


def weights(folder: Path) -> dict[str, str]:
    return {p.name: tensors_digest(p) for p in sorted((folder / "candidates").glob("*.safetensors"))}


def distill_command(recipe: Path, out: Path) -> list[str]:
    return cli("distill-blocks", "--config", str(recipe), "--out", str(out))


def checkpoints(folder: Path) -> Callable[[], int]:
    """Progress of a distillation: checkpoints and finished candidates written so far."""
    return lambda: len(list(folder.glob("c*/*.safetensors")))


def test_distill_killed_resumes_exactly(micro_space_path, tmp_path):
    recipe = tmp_path / "distill.yaml"
    recipe.write_text(f"space: {micro_space_path}\nsteps: 6\nbatch_size: 1\nheld_out_samples: 1\n"
                      "checkpoint_every: 2\nlatents: {source: gaussian}\n")
    run_to_end(distill_command(recipe, tmp_path / "ref"))
    resumed = tmp_path / "killed"
    done = kill_and_resume(distill_command(recipe, resumed), checkpoints(resumed), [2], random.Random(0))
    assert done == 1
    assert weights(resumed) == weights(tmp_path / "ref") and weights(resumed)


def experiment(tmp_path: Path, space: Path) -> Path:
    path = tmp_path / "micro.yaml"
    path.write_text(f"name: micro\nspace: {space}\nstages: [surrogates, search, extract]\n"
                    "surrogates: {steps: 4, batch_size: 1, held_out_samples: 1, checkpoint_every: 2, "
                    "latents: {source: gaussian}}\n"
                    f"search: {{strategy: random, budget: 4, eps: [10], validation: {json.dumps(GAUSSIAN)}}}\n")
    return path


def run_outputs(run_dir: Path) -> dict[str, object]:
    compact = run_dir / "extract" / "compact" / "diffusion_pytorch_model.safetensors"
    return {"surrogates": weights(run_dir / "surrogates"), "trials": trials(run_dir / "search"),
            "winner": json.loads((run_dir / "extract" / "winner.json").read_text()),
            "compact": tensors_digest(compact)}


def run_progress(run_dir: Path) -> Callable[[], int]:
    """Progress of a run: files written under the run folder."""
    return lambda: sum(1 for p in run_dir.rglob("*") if p.is_file()) if run_dir.exists() else 0


@pytest.mark.parametrize("kills", [pytest.param(1, id="once"), pytest.param(5, id="five", marks=pytest.mark.slow)])
def test_run_killed_resumes_exactly(micro_space_path, tmp_path, kills):
    path = experiment(tmp_path, micro_space_path)
    run_to_end(cli("run", str(path), "--runs-dir", str(tmp_path / "ref")))
    reference = run_outputs(tmp_path / "ref" / "micro")
    total = sum(1 for p in (tmp_path / "ref" / "micro").rglob("*") if p.is_file())
    rng = random.Random(kills)
    targets = sorted(rng.sample(range(1, total), kills))
    done = kill_and_resume(cli("run", str(path), "--runs-dir", str(tmp_path / "killed")),
                           run_progress(tmp_path / "killed" / "micro"), targets, rng)
    assert done >= 1
    assert run_outputs(tmp_path / "killed" / "micro") == reference


def test_lock_of_a_killed_process_is_taken_over(tmp_path, caplog):
    from tocsr_nas.locking import folder_lock

    code = ("import sys, time; from tocsr_nas.locking import folder_lock; lock = folder_lock(sys.argv[1]).acquire(); "
            "print('ready', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "out")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ready"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with caplog.at_level("WARNING", logger="tocsr_nas.locking"), folder_lock(tmp_path / "out"):
        assert f"taking over the stale lock of pid {holder.pid} (dead" in caplog.text
    assert not list(tmp_path.glob(".*.lock"))  # a clean release leaves no lock file
