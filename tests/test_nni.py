"""NNI interop: the space as NNI search-space JSON, and the toolkit's independence of NNI.

The nni-* strategies themselves run the strategy conformance suite (tests/test_strategies.py) wherever NNI is
installed; NNI 3.0 pins old packages, so it lives in its own environment (see the README).
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import search_spaces
from tocsr_nas.cli import main

from .badinput import assert_refused


def test_space_export_nni_is_one_choice_of_labels_per_decision(micro_space_path, tmp_path, capsys):
    out = tmp_path / "nni.json"
    assert main(["space", "export", str(micro_space_path), "--format", "nni", "--out", str(out)]) == 0
    exported = json.loads(out.read_text())
    space = search_spaces.load(micro_space_path)
    assert list(exported) == [d.name for d in space.decisions]
    for decision in space.decisions:
        assert exported[decision.name] == {"_type": "choice", "_value": [c.label for c in decision.candidates]}
    capsys.readouterr()
    assert main(["space", "export", str(micro_space_path), "--format", "nni"]) == 0
    assert json.loads(capsys.readouterr().out) == exported
    assert_refused(["space", "export", str(micro_space_path), "--format", "nni", "--out", str(out)], tmp_path, capsys,
                   match="exists")


def test_nni_accepts_the_exported_space(micro_space_path, capsys):
    pytest.importorskip("nni", reason="needs the extra 'nni' (NNI 3.0, in its own environment)")
    from nni.common.hpo_utils.validation import validate_search_space  # noqa: PLC0415

    assert main(["space", "export", str(micro_space_path), "--format", "nni"]) == 0
    assert validate_search_space(json.loads(capsys.readouterr().out), raise_exception=True)


def test_toolkit_never_imports_nni():
    code = ("import sys, strategies, tocsr_nas.cli, tocsr_nas.search.runner; "
            "assert 'nni' not in sys.modules, 'nni was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
