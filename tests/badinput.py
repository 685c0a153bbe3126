"""The bad-input harness: a refused command exits 2 with one ``error:`` line, no traceback, and writes nothing.

Every bad-input test goes through :func:`assert_refused`, so "refused" means the same thing for every command::

    def test_upscale_zero_steps(tmp_path, capsys):
        assert_refused(["upscale", str(img), "-o", str(tmp_path / "out.png"), "--steps", "0"], tmp_path, capsys,
                       match="--steps")
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tocsr_nas.cli import main


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root``: relative path -> content hash (``"dir"`` for folders)."""
    tree = {}
    for path in sorted(Path(root).rglob("*")):
        rel = str(path.relative_to(root))
        tree[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return tree


def run_cli(argv: Sequence[str]) -> int:
    """``tocsr-nas argv`` in this process; argparse's ``SystemExit`` becomes its exit code."""
    try:
        return main(list(argv))
    except SystemExit as exit_:
        return int(exit_.code or 0)


def assert_refused(argv: Sequence[str], root: Path, capsys: pytest.CaptureFixture[str], *,
                   match: str | None = None, run: Callable[[Sequence[str]], int] = run_cli) -> str:
    """Run ``argv`` (through ``run``: the CLI, or e.g. a benchmark's ``main``) and check it is refused cleanly;
    returns the error line.

    Refused cleanly: exit code 2, exactly one stderr line starting with ``error:`` (containing ``match`` when
    given), nothing on stdout that looks like a traceback, and the file tree under ``root`` unchanged.
    """
    before = snapshot(root)
    capsys.readouterr()
    code = run(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, f"exit code {code} for {list(argv)}; stderr: {captured.err!r}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"not a one-line error: {captured.err!r}"
    assert "Traceback" not in captured.out + captured.err
    if match is not None:
        assert match in lines[0], f"{match!r} not in {lines[0]!r}"
    assert snapshot(root) == before, f"{list(argv)} changed the files under {root}"
    return lines[0]
