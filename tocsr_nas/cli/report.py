"""``tocsr-nas report``: a Markdown report (figures + tables) of one run."""
from __future__ import annotations

import argparse

from ..errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="write report.md with figures and tables for a run",
        description="Report a run: a search folder (with trials.jsonl) or a runs/<name>/ folder with stage "
                    "subfolders (search/, surrogates/*.csv, sr/*.csv or eval/*.csv). Writes report.md, PNG "
                    "figures, tables (CSV, Markdown, LaTeX) and summary.json; stages that are missing are named.",
        epilog="Example: tocsr-nas report runs/x --out runs/x/report --anchor 'slim=down.0:R=slim(width=0.5)'")
    parser.add_argument("run", help="a search folder or a runs/<name>/ folder")
    parser.add_argument("--out", help="output folder (default RUN/report)")
    parser.add_argument("--eps", type=float, nargs="+", help="loss bounds for the winner table (default: the search's)")
    parser.add_argument("--true-front", help="CSV with loss and gmacs columns (e.g. an enumerated small space)")
    parser.add_argument("--anchor", action="append", default=[], metavar="NAME=ARCH",
                        help="mark an evaluated arch on the Pareto plots (repeatable)")
    parser.set_defaults(func=run)


def parse_anchors(values: list[str]) -> dict[str, str]:
    """``NAME=ARCH`` strings -> {name: arch}."""
    anchors = {}
    for value in values:
        name, sep, arch = value.partition("=")
        if not sep or not name or not arch:
            raise ConfigError(f"bad anchor '{value}'", source="command line", key="--anchor", allowed="NAME=ARCH")
        anchors[name] = arch
    return anchors


def run(args: argparse.Namespace) -> int:
    from analysis.frames import read_true_front  # noqa: PLC0415 (matplotlib only for this command)
    from analysis.report import build_report  # noqa: PLC0415

    true_front = read_true_front(args.true_front) if args.true_front else None
    path = build_report(args.run, args.out, eps=args.eps, true_front=true_front, anchors=parse_anchors(args.anchor))
    print(f"wrote {path}")
    return 0
