"""``tocsr-nas --help`` and every ``COMMAND --help`` stay fast: building the parser imports no heavy package."""
from __future__ import annotations

import subprocess
import sys

from tocsr_nas.cli import COMMAND_MODULES

HEAVY = ("torch", "diffusers", "pandas", "transformers", "matplotlib", "pydantic")
PROBE = ("import sys, tocsr_nas.cli; tocsr_nas.cli.build_parser(); "
         f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")


def test_building_the_parser_imports_no_heavy_package() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"building the parser imported {out}"


def test_every_command_help_works() -> None:
    from tocsr_nas.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001
    assert set(COMMAND_MODULES) <= set(commands)
    for name, sub in commands.items():
        assert sub.format_help().startswith("usage: tocsr-nas " + name), name


def test_upscale_color_fix_choices_match_the_library() -> None:
    from tocsr_nas.cli.upscale import COLOR_FIXES
    from tocsr_nas.sr.colorfix import COLOR_FIXES as LIBRARY

    assert COLOR_FIXES == LIBRARY
