"""``tocsr-nas run``: run an experiment YAML end to end (resumes; stages already done are skipped)."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="run an experiment YAML (stages, sweeps; resumable)",
        description="Run the stages of an experiment YAML into RUNS/<name>/. key=value pairs override config keys "
                    "(dotted, YAML values); a sweep: expands into several runs. Re-running skips finished stages; "
                    "a stage whose config or upstream outputs changed reruns with everything after it (its old "
                    "folder is cleared). One process per run folder.",
        epilog="Example: tocsr-nas run experiments/quickstart.yaml search.budget=10 seed=1")
    parser.add_argument("experiment", help="an experiment YAML, e.g. experiments/quickstart.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    parser.add_argument("--runs-dir", default="runs", help="where run folders go (default: runs)")
    parser.add_argument("--yes", action="store_true", help="run a sweep even when it exceeds max_runs")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..atomic import write_json  # noqa: PLC0415
    from ..experiments import check_run_count, resolve, run_experiment, stage_folders  # noqa: PLC0415

    runs = resolve(args.experiment, args.overrides)
    check_run_count(runs, args.yes)
    root = Path(args.runs_dir) / runs[0][1].name
    for (_suffix, config), (run_dir, folders) in zip(runs, stage_folders(runs, root)):
        print(f"run {run_dir}: stages {', '.join(config.stages)}", flush=True)
        results = run_experiment(config, run_dir, folders)
        for stage, result in results.items():
            state = "skipped (up to date)" if result["skipped"] else f"{result['seconds']:.1f} s"
            print(f"  {stage:<12} {state}")
        write_json(run_dir / "run_summary.json", results)
    if len(runs) > 1 and "search" in runs[0][1].stages and "report" in runs[0][1].stages:
        from analysis.report import build_comparison  # noqa: PLC0415

        path = build_comparison([run_dir for run_dir, _ in stage_folders(runs, root)], root / "compare")
        print(f"comparison of {len(runs)} runs: {path}")
    return 0
