"""Conformance checks for search spaces, and small spaces to test strategies and evaluators on.

``toy_space()`` needs no teacher: its units are named, not built, so it loads instantly.
"""
from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from search_spaces import SearchSpace, load
from tocsr_nas.ops.registry import get_op

TOY_UNITS = {f"{block}.{kind}s.0": {"resnet": "resnet", "attention": "transformer"}[kind]
             for block in ("down_blocks.0", "mid_block", "up_blocks.0") for kind in ("resnet", "attention")}

TOY_SPACE = """
name: toy
candidates:
  resnet: [teacher, identity, {op: slim_resnet, width: 0.5}, {op: dws_resnet, expansion: 2, kernel: 3}]
  transformer:
    - teacher
    - identity
    - {op: light_transformer, heads: 1, ff_mult: 1, cross_attention: [true, false]}
    - linear_attention
stages:
  - {name: down, units: ["down_blocks.*"]}
  - {name: mid, units: ["mid_block.*"]}
  - {name: up, units: ["up_blocks.*"]}
"""

TINY_SPACE = """
name: tiny
candidates:
  resnet: [teacher, identity]
  transformer: [teacher, identity]
stages:
  - {name: mid, units: ["mid_block.*"]}
"""


def toy_space(text: str = TOY_SPACE, unit_kinds: Mapping[str, str] = TOY_UNITS) -> SearchSpace:
    """A space from YAML ``text`` over named units (default: 6 decisions, 8000 archs; ``TINY_SPACE``: 4 archs)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "space.yaml"
        path.write_text(text)
        return load(path, unit_kinds=dict(unit_kinds))


def check_space(space: SearchSpace, *, samples: int = 20, seed: int = 0) -> None:
    """Assert what every search space must offer: sizes, round trips of archs, stable ids, ops that fit.

    Raises:
        AssertionError: naming the first broken property.
    """
    assert space.decisions and space.size > 1, f"{space.name}: a space needs a choice"
    assert space.size == int(np.prod(space.cardinalities)), f"{space.name}: size is not the product of choices"
    names = [d.name for d in space.decisions]
    assert len(names) == len(set(names)), f"{space.name}: duplicate decision names"
    for decision in space.decisions:
        labels = [c.label for c in decision.candidates]
        assert len(labels) == len(set(labels)), f"{space.name}: {decision.name}: duplicate candidate labels"
        for candidate in decision.candidates:
            assert decision.kind in get_op(candidate.op).kinds, f"{decision.name}: {candidate.op} cannot replace it"
    rng = np.random.default_rng(seed)
    for _ in range(samples):
        arch = space.sample(rng)
        space.validate(arch)
        assert space.parse(str(arch)) == arch, f"{space.name}: arch string does not round-trip: {arch}"
        assert space.decode(space.encode(arch)) == arch, f"{space.name}: encode/decode does not round-trip"
        assert space.one_hot(arch).sum() == len(space.decisions)
        assert space.parse(str(arch)).arch_id == arch.arch_id
        mutant = space.mutate(arch, rng)
        space.validate(mutant)
        assert mutant != arch or all(n == 1 for n in space.cardinalities), f"{space.name}: mutate changed nothing"
        space.validate(space.crossover(arch, space.sample(rng), rng))
    assert all(label == "T" for _, label in space.teacher_arch()), f"{space.name}: teacher arch is not all 'T'"
