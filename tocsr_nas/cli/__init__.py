"""The ``tocsr-nas`` command line. Each sub-command lives in its own module with ``add_parser(subparsers)``.

A module's ``add_parser`` registers its sub-command and sets ``func`` (``args -> exit code``) as the default.
Errors from bad input (:class:`~tocsr_nas.errors.ConfigError`) print as one line and exit with code 2.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tocsr-nas",
        description="Task-optimal compact diffusion UNets for super-resolution, found by NAS.",
        epilog="Example: tocsr-nas profile --space tiny_ldm",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name.replace('-', '_')}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # key=value overrides may follow options (``run X.yaml --yes a=1``); anything else is an error
        if not hasattr(args, "overrides") or any(e.startswith("-") or "=" not in e for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
