"""The ``tocsr-nas`` command line. Each sub-command lives in its own module with ``add_parser(subparsers)``.

A module's ``add_parser`` registers its sub-command and sets ``func`` (``args -> exit code``) as the default.
Errors from bad input (:class:`~tocsr_nas.errors.ConfigError`) and usage errors (an unknown flag, a bad value, a
missing argument) print as one line, ``error: <prog> <command>: <message>``, and exit with code 2.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from typing import NoReturn

from ..errors import ConfigError

COMMAND_MODULES = (
    "units",
    "space",
    "profile",
    "search",
    "run",
    "train",
    "sample",
    "distill-blocks",
    "report",
    "compare",
    "upscale",
    "evaluate-sr",
    "train-sr",
    "expand",
)


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (no usage block); sub-command parsers inherit it."""

    def error(self, message: str) -> NoReturn:
        usage_error(self.prog, message)


def usage_error(prog: str, message: str) -> NoReturn:
    """Print ``error: <prog>: <message> (see --help)`` and exit with code 2."""
    print(f"error: {prog}: {' '.join(message.split())} (see --help)", file=sys.stderr)
    sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="tocsr-nas",
        description="Task-optimal compact diffusion UNets for super-resolution, found by NAS.",
        epilog="Example: tocsr-nas profile --space tiny_ldm",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--plugins", action="extend", type=lambda text: [p for p in text.split(",") if p], default=[],
                        metavar="PLUGIN[,PLUGIN]",
                        help="local plug-ins to load first: .py files or module names registering ops, strategies, "
                             "evaluators or degradations (runs their code; repeatable)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name.replace('-', '_')}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # key=value overrides may follow options (``run X.yaml --yes a=1``); anything else is an error
        if not hasattr(args, "overrides") or any(e.startswith("-") or "=" not in e for e in extra):
            usage_error(f"{parser.prog} {args.command}", f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("tocsr_nas.plugins").setLevel(logging.INFO)  # always say which plug-ins ran
    try:
        if args.plugins:
            from ..plugins import load_plugins  # noqa: PLC0415

            load_plugins(args.plugins, base=Path.cwd(), source="--plugins")
        return int(args.func(args) or 0)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
