"""The command line: summaries, JSON output, and one-line errors with exit code 2."""
from __future__ import annotations

import json

import pytest

from tocsr_nas.cli import main

from .conftest import MICRO_TEACHER


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("units", "space", "profile"):
        assert command in out


def test_units_table(capsys):
    assert main(["units", "--teacher", str(MICRO_TEACHER)]) == 0
    out = capsys.readouterr().out
    assert "down_blocks.0.resnets.0" in out and "downsampler" in out
    assert "32 units, 9 with skip inputs" in out  # 17 resnets, 11 transformers, 2 down- and 2 upsamplers


def test_space_show_json(capsys, micro_space_path):
    assert main(["space", "show", str(micro_space_path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["name"] == "micro" and shown["size"] > 1
    assert shown["decisions"][0]["candidates"][0] == "T"


def test_profile_arch_json(capsys, micro_space_path, tmp_path):
    table = tmp_path / "table.json"
    argv = ["profile", "--space", str(micro_space_path), "--no-ptflops", "--arch", "down:R=I;up:A=lin", "--json",
            "--out", str(table), "--verify", "2"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["arch"]["ratios"]["params"] > 1.0
    assert summary["verify"]["params_exact"] and summary["verify"]["max_macs_rel_error"] < 0.005
    assert main(["profile", "--space", str(micro_space_path), "--table", str(table), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["teacher_cost"] == summary["teacher_cost"]
    rewrite = ["profile", "--space", str(micro_space_path), "--table", str(table), "--out", str(table), "--json"]
    assert main(rewrite) == 2 and "--overwrite" in capsys.readouterr().err  # an existing --out is refused...
    assert main([*rewrite, "--overwrite"]) == 0  # ...unless asked
    assert json.loads(table.read_text())["fingerprint"]


@pytest.mark.parametrize(("argv", "expected"), [
    (["space", "show", "nope"], "error: space: unknown search space 'nope' (allowed: "),
    (["units", "--teacher", "nope"], "error: teacher: unknown teacher 'nope' (allowed: "),
    (["units", "--teacher", "/no/such/folder"], "error: /no/such/folder: teacher folder or config file not found"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, expected):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(expected) and err.count("\n") == 1
