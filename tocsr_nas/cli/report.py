"""``tocsr-nas report``: a Markdown report (figures + tables) of one run."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..arch import split_arch_string
from ..errors import ConfigError
from .argtypes import float_range
from .paths import (
    check_input_dir,
    check_input_file,
    check_output_dir,
    removed_if_refused,
)

OUTPUTS = ("report.md", "summary.json")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="write report.md with figures and tables for a run",
        description="Report a run: a search folder (with trials.jsonl) or a runs/<name>/ folder with stage "
                    "subfolders (search/, surrogates/*.csv, sr/*.csv or eval/*.csv). Writes report.md, PNG "
                    "figures, tables (CSV, Markdown, LaTeX) and summary.json; stages that are missing are named.",
        epilog="Example: tocsr-nas report runs/x --out runs/x/report --anchor 'slim=down.0:R=slim(width=0.5)'")
    parser.add_argument("run", help="a search folder or a runs/<name>/ folder")
    parser.add_argument("--out", help="output folder (default RUN/report)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier report in --out")
    parser.add_argument("--eps", type=float_range(0.0), nargs="+", help="loss bounds for the winner table (default: the search's)")
    parser.add_argument("--true-front", help="CSV with loss and gmacs columns (e.g. an enumerated small space)")
    parser.add_argument("--anchor", action="append", default=[], metavar="NAME=ARCH",
                        help="mark an evaluated arch on the Pareto plots (repeatable)")
    parser.set_defaults(func=run)


def parse_anchors(values: list[str]) -> dict[str, str]:
    """``NAME=ARCH`` strings -> {name: arch}; the arch must be a well-formed arch string."""
    anchors = {}
    for value in values:
        name, sep, arch = value.partition("=")
        if not sep or not name or not arch:
            raise ConfigError(f"bad anchor '{value}'", source="command line", key="--anchor", allowed="NAME=ARCH")
        try:
            split_arch_string(arch)
        except ValueError as err:
            raise ConfigError(f"bad arch in anchor '{name}': {err}", source="command line", key="--anchor") from None
        if name in anchors:
            raise ConfigError(f"anchor '{name}' given twice", source="command line", key="--anchor")
        anchors[name] = arch
    return anchors


def run(args: argparse.Namespace) -> int:
    from analysis.frames import read_true_front  # noqa: PLC0415 (matplotlib only for this command)
    from analysis.report import build_report  # noqa: PLC0415

    run = check_input_dir(args.run, key="RUN")
    out = Path(args.out) if args.out else run / "report"
    check_output_dir(out, key="--out", outputs=OUTPUTS, overwrite=args.overwrite)
    anchors = parse_anchors(args.anchor)
    true_front = read_true_front(check_input_file(args.true_front, key="--true-front")) if args.true_front else None
    with removed_if_refused(out):
        path = build_report(run, out, eps=args.eps, true_front=true_front, anchors=anchors)
    print(f"wrote {path}")
    return 0
