"""CLI start-up time: ``tocsr-nas --help`` (and one ``COMMAND --help``) vs ``python -c pass``, side by side.

Each round runs the three commands once, in turn, in fresh processes; the figures are medians over the rounds
(5 by default) and the added time is the median of ``--help`` minus the median of ``python -c pass``.
Also records whether parsing imported torch, diffusers or pandas. ``--baseline DIR`` adds ``tocsr-nas --help``
run from another checkout (e.g. ``git worktree add /tmp/before <commit>``) to the same rounds. Run from the
repository root::

    python benchmarks/cli_startup.py [--rounds 5] [--baseline /tmp/before]

writes ``benchmarks/results/cli_startup.{json,md}``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import write_results

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "tocsr-nas --help": [sys.executable, "-m", "tocsr_nas", "--help"],
    "tocsr-nas search --help": [sys.executable, "-m", "tocsr_nas", "search", "--help"],
}
HEAVY = ("torch", "diffusers", "pandas", "transformers", "matplotlib")
PROBE = ("import sys, tocsr_nas.cli; tocsr_nas.cli.build_parser(); "
         f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")


ROOT = Path(__file__).resolve().parents[1]


def time_once(argv: list[str], root: Path = ROOT) -> float:
    env = {**os.environ, "PYTHONPATH": str(root)}
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env, cwd=root)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="another checkout whose `tocsr-nas --help` is timed too")
    args = parser.parse_args()
    commands = {name: (argv, ROOT) for name, argv in COMMANDS.items()}
    if args.baseline:
        commands[f"tocsr-nas --help (baseline {args.baseline})"] = (COMMANDS["tocsr-nas --help"], args.baseline)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.rounds):
        for name, (argv, root) in commands.items():
            times[name].append(time_once(argv, root))
    medians = {name: statistics.median(t) for name, t in times.items()}
    base = medians["python -c pass"]
    heavy = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True, cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.strip()
    load = os.getloadavg()[0]
    data = {"rounds": args.rounds, "load_average_1min": load, "times_s": times, "median_s": medians,
            "added_s": {name: m - base for name, m in medians.items() if name != "python -c pass"},
            "heavy_modules_imported_by_parser": heavy.split(",") if heavy else []}
    rows = "\n".join(f"| `{name}` | {medians[name]:.3f} | {medians[name] - base:+.3f} |" for name in commands)
    markdown = (f"Median of {args.rounds} rounds (the commands alternate within a round), fresh processes; "
                f"1-minute load average {load:.1f} when done (on a busy machine every row is slower).\n\n"
                "| command | median (s) | added over `python -c pass` (s) |\n|---|---|---|\n" + rows +
                f"\n\nHeavy packages imported by building the parser: {heavy or 'none'}.\n\n"
                f"Reproduce: `python benchmarks/cli_startup.py{' --baseline ' + str(args.baseline) if args.baseline else ''}`"
                + (" (the baseline: `git archive <commit> | tar -x -C DIR`)" if args.baseline else "") + "\n")
    json_path, md_path = write_results("cli_startup", data, markdown)
    print(markdown)
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
