"""Train the embedded default (the VAE, then the teacher on its latents) with a time budget per recipe.

    python experiments/recipes/train_embedded_default.py --hr-dir IMAGES --out runs/default \
        --vae-minutes 3 --teacher-minutes 4 [--eval-dir SET ...]

Runs on whatever device torch sees (the GPU recipes ``train_vae_gpu.yaml`` / ``train_teacher_gpu.yaml`` by
default). Each recipe is timed first: after a warm-up run, two probe runs of ``p`` and ``2p`` steps in a scratch
folder give the time of one step without the fixed costs (device start-up, kernel selection, export); ``loop.steps`` is then set so the
real run fits its budget (rounded down to a multiple of 100). The resolved recipe is written to
``OUT/configs/<name>.yaml`` before training, so ``tocsr-nas train <name> --config OUT/configs/<name>.yaml``
reproduces the run without this script, and rerunning the script on the same ``OUT`` resumes. Results:
``OUT/vae/vae`` and ``OUT/teacher/weights`` (the files that ship in ``tocsr_nas/weights/tiny-ldm``), each
run's ``result.json`` and ``metrics.jsonl``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tocsr_nas.cli import main as tocsr_nas
from tocsr_nas.config_io import read_mapping

RECIPES = Path(__file__).resolve().parent


def timed_run(recipe: str, data: dict[str, Any], steps: int, folder: Path, extra: list[str]) -> float:
    """Training-loop seconds of a ``steps``-step run of ``data`` in ``folder`` (from its ``result.json``)."""
    probe = json.loads(json.dumps(data))
    probe["loop"].update(steps=steps, warmup_steps=min(probe["loop"].get("warmup_steps", 0), steps),
                         checkpoint_every=steps, log_every=steps)
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "probe.yaml"
    config.write_text(yaml.safe_dump(probe, sort_keys=False))
    if tocsr_nas(["train", recipe, "--config", str(config), "--out", str(folder), "--no-resume", *extra]) != 0:
        raise SystemExit(f"probe run of {recipe} failed")
    return float(json.loads((folder / "result.json").read_text())["wall_s"])


def steps_for_budget(recipe: str, data: dict[str, Any], minutes: float, probe_steps: int, extra: list[str]) -> int:
    """The number of steps of ``data`` that fit in ``minutes``, from two probe runs."""
    with tempfile.TemporaryDirectory() as scratch:
        timed_run(recipe, data, probe_steps, Path(scratch) / "warmup", extra)  # device start-up, kernel choice
        short = timed_run(recipe, data, probe_steps, Path(scratch) / "short", extra)
        long = timed_run(recipe, data, 2 * probe_steps, Path(scratch) / "long", extra)
    if long <= short:
        raise SystemExit(f"[{recipe}] timing probe failed: {2 * probe_steps} steps took {long:.2f} s, "
                         f"{probe_steps} took {short:.2f} s; give a larger --probe-steps")
    per_step = (long - short) / probe_steps
    steps = int(minutes * 60 / per_step) // 100 * 100
    print(f"[{recipe}] {per_step * 1000:.1f} ms/step -> {steps} steps in {minutes} min", flush=True)
    return max(steps, data["loop"].get("warmup_steps", 0) + 100)


def train_recipe(recipe: str, config: Path, minutes: float, out: Path, probe_steps: int,
                 extra: list[str], final_only: list[str]) -> Path:
    """Size ``config`` to ``minutes``, write the resolved recipe and train it in ``out/<recipe>``.

    A resolved recipe already in ``out/configs`` is reused as it is and its run resumes (no new probes).
    """
    resolved = out / "configs" / f"{recipe}.yaml"
    if not resolved.exists():
        data = read_mapping(config)
        data["loop"]["steps"] = steps_for_budget(recipe, data, minutes, probe_steps, extra)
        resolved.parent.mkdir(parents=True, exist_ok=True)
        header = f"# {config.name} with loop.steps sized to {minutes} min by train_embedded_default.py\n"
        resolved.write_text(header + yaml.safe_dump(data, sort_keys=False))
    command = ["-v", "train", recipe, "--config", str(resolved), "--out", str(out / recipe), *extra, *final_only]
    if tocsr_nas(command) != 0:
        raise SystemExit(f"{recipe} run failed")
    return out / recipe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hr-dir", required=True, type=Path, help="training image folder")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--vae-config", type=Path, default=RECIPES / "train_vae_gpu.yaml")
    parser.add_argument("--teacher-config", type=Path, default=RECIPES / "train_teacher.yaml")
    parser.add_argument("--vae-minutes", type=float, default=3.0)
    parser.add_argument("--teacher-minutes", type=float, default=4.0)
    parser.add_argument("--probe-steps", type=int, default=40, help="steps of the shorter timing probe")
    parser.add_argument("--eval-dir", type=Path, action="append", default=[], help="VAE PSNR folder (repeatable)")
    args = parser.parse_args(argv)
    data = ["--hr-dir", str(args.hr_dir)]
    evals = [item for folder in args.eval_dir for item in ("--eval-dir", str(folder))]
    vae_run = train_recipe("vae", args.vae_config, args.vae_minutes, args.out, args.probe_steps, data, evals)
    train_recipe("teacher", args.teacher_config, args.teacher_minutes, args.out, args.probe_steps,
                 data + ["--vae", str(vae_run / "vae")], [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
