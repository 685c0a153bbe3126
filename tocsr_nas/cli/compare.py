"""``tocsr-nas compare``: several searches side by side (hypervolume curves, strategy ranking)."""
from __future__ import annotations

import argparse

from .argtypes import float_range
from .paths import (
    check_input_dir,
    check_input_file,
    check_output_dir,
    removed_if_refused,
)

OUTPUTS = ("compare.md", "summary.json")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="compare searches: hypervolume vs evaluations and a strategy ranking",
        description="Put search runs side by side (e.g. strategies x seeds): hypervolume of (loss, GMACs) after "
                    "each evaluation, mean and spread over seeds per strategy, and strategies ranked by final "
                    "hypervolume. Each RUN is a search folder, a runs/<name>/ folder, or a folder of searches.",
        epilog="Example: tocsr-nas compare runs/bench/random-s0 runs/bench/bo-s0 runs/bench/bo-s1 --out runs/bench/compare")
    parser.add_argument("runs", nargs="+", metavar="RUN", help="search folders (or folders holding them)")
    parser.add_argument("--out", default="comparison", help="output folder (default ./comparison)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier comparison in --out")
    parser.add_argument("--true-front", help="CSV with loss and gmacs columns: adds hypervolume ratios to it")
    parser.add_argument("--reference", type=float_range(0.0), nargs=2, metavar=("LOSS", "GMACS"),
                        help="hypervolume reference point (default: worst over all runs + 10%%)")
    parser.add_argument("--band", choices=["minmax", "std"], default="minmax", help="spread over seeds")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from analysis.frames import read_true_front  # noqa: PLC0415 (matplotlib only for this command)
    from analysis.report import build_comparison  # noqa: PLC0415

    for run in args.runs:
        check_input_dir(run, key="RUN")
    check_output_dir(args.out, key="--out", outputs=OUTPUTS, overwrite=args.overwrite)
    true_front = read_true_front(check_input_file(args.true_front, key="--true-front")) if args.true_front else None
    with removed_if_refused(args.out):
        path = build_comparison(args.runs, args.out, true_front=true_front, reference=args.reference, band=args.band)
    print(f"wrote {path}")
    return 0
