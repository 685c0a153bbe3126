"""A resolved search space: decisions (stage x unit kind) over concrete units, each with its candidates.

It offers the capabilities strategies need (Archai's idea): ``sample``, ``mutate``, ``crossover``, ``encode`` /
``decode``, ``one_hot``, ``enumerate``, and ``parse`` for arch strings.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tocsr_nas.arch import KIND_LETTERS, Arch, decision_name, split_arch_string
from tocsr_nas.errors import ConfigError
from tocsr_nas.ops.registry import UNIT_KINDS, check_hparams, get_op

from .schema import CandidateEntry, SpaceConfig


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One op with fixed hyperparameters; ``label`` is its name in arch strings."""

    op: str
    hparams: tuple[tuple[str, Any], ...]
    label: str

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.hparams)


@dataclasses.dataclass(frozen=True)
class Decision:
    """The choice of one candidate for every ``kind`` unit of a stage."""

    name: str
    stage: str
    kind: str
    units: tuple[str, ...]
    candidates: tuple[Candidate, ...]

    def index(self, label: str) -> int:
        for i, candidate in enumerate(self.candidates):
            if candidate.label == label:
                return i
        raise KeyError(label)


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def expand_candidates(entries: list[CandidateEntry], kind: str, *, source: str, key: str) -> tuple[Candidate, ...]:
    """Expand YAML candidate entries (lists of hyperparameter values -> cartesian product) into candidates."""
    candidates: list[Candidate] = []
    for i, entry in enumerate(entries):
        entry_key = f"{key}.{i}"
        if isinstance(entry, str):
            entry = {"op": entry}
        entry = dict(entry)
        name = entry.pop("op", None)
        if not isinstance(name, str):
            raise ConfigError("candidate needs 'op: <name>'", source=source, key=entry_key)
        op = get_op(name, source=source, key=f"{entry_key}.op")
        if kind not in op.kinds:
            raise ConfigError(f"op '{name}' cannot replace {kind} units", source=source, key=f"{entry_key}.op",
                              allowed=sorted(op.kinds))
        check_hparams(op, entry, source=source, key=entry_key)
        grid = {k: v if isinstance(v, list) else [v] for k, v in entry.items()}
        for k, values in grid.items():
            if not values:
                raise ConfigError("empty list of values", source=source, key=f"{entry_key}.{k}")
        for values in itertools.product(*grid.values()):
            hparams = tuple(zip(grid, values))
            body = ",".join(f"{k}={_format_value(v)}" for k, v in hparams)
            label = f"{op.short}({body})" if hparams else op.short
            candidates.append(Candidate(op=name, hparams=hparams, label=label))
    labels = [c.label for c in candidates]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ConfigError(f"duplicate candidates {duplicates}", source=source, key=key)
    if not candidates:
        raise ConfigError("no candidates", source=source, key=key)
    return tuple(candidates)


class SearchSpace:
    """Decisions over a teacher's units; archs pick one candidate label per decision."""

    def __init__(self, config: SpaceConfig, decisions: list[Decision], source: str) -> None:
        self.config = config
        self.name = config.name
        self.teacher = config.teacher
        self.latent_size = config.latent_size
        self.source = source
        self.decisions = tuple(decisions)
        self._by_name = {d.name: d for d in self.decisions}

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def resolve(cls, config: SpaceConfig, unit_kinds: Mapping[str, str], source: str | Path) -> SearchSpace:
        """Match ``config``'s stage patterns against ``unit_kinds`` (unit path -> kind, in forward order)."""
        source = str(source)
        for kind in config.candidates:
            if kind not in UNIT_KINDS:
                raise ConfigError(f"unknown unit kind '{kind}'", source=source, key="candidates", allowed=UNIT_KINDS)
        owner: dict[str, str] = {}
        decisions: list[Decision] = []
        for s, stage in enumerate(config.stages):
            key = f"stages.{s}"
            matched = [p for p in unit_kinds if any(fnmatch.fnmatchcase(p, pattern) for pattern in stage.units)]
            for pattern in stage.units:
                if not any(fnmatch.fnmatchcase(p, pattern) for p in unit_kinds):
                    raise ConfigError(f"unit pattern '{pattern}' matches no unit of teacher '{config.teacher}'",
                                      source=source, key=f"{key}.units", allowed="e.g. " + ", ".join(list(unit_kinds)[:3]))
            for path in matched:
                if path in owner:
                    raise ConfigError(f"stage '{stage.name}' overlaps stage '{owner[path]}' at unit {path}",
                                      source=source, key=f"{key}.units")
                owner[path] = stage.name
            for kind in stage.candidates:
                if kind not in UNIT_KINDS:
                    raise ConfigError(f"unknown unit kind '{kind}'", source=source, key=f"{key}.candidates", allowed=UNIT_KINDS)
            lists = {**config.candidates, **stage.candidates}
            groups = [(path, [path]) for path in matched] if stage.per_unit else [(stage.name, matched)]
            for group_name, paths in groups:
                for kind in UNIT_KINDS:
                    units = tuple(p for p in paths if unit_kinds[p] == kind)
                    if not units or kind not in lists:
                        continue  # no candidates for this kind: those units stay the teacher's
                    list_key = f"{key}.candidates.{kind}" if kind in stage.candidates else f"candidates.{kind}"
                    candidates = expand_candidates(lists[kind], kind, source=source, key=list_key)
                    decisions.append(Decision(decision_name(group_name, kind), group_name, kind, units, candidates))
        names = [d.name for d in decisions]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"repeated stage names {repeated}", source=source, key="stages")
        if not decisions:
            raise ConfigError("no stage has candidates for its units", source=source, key="stages")
        return cls(config, decisions, source)

    # -- introspection ------------------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """The number of architectures."""
        return math.prod(len(d.candidates) for d in self.decisions)

    @property
    def cardinalities(self) -> tuple[int, ...]:
        return tuple(len(d.candidates) for d in self.decisions)

    def decision(self, name: str) -> Decision:
        return self._by_name[name]

    def unit_choices(self, arch: Arch) -> dict[str, Candidate]:
        """Unit path -> chosen candidate, for every unit the space decides on."""
        self.validate(arch)
        choices = {}
        for decision, (_, label) in zip(self.decisions, arch.choices):
            candidate = decision.candidates[decision.index(label)]
            for unit in decision.units:
                choices[unit] = candidate
        return choices

    # -- archs --------------------------------------------------------------------------------------------------
    def arch(self, labels: Mapping[str, str] | None = None, *, default: str | None = "T") -> Arch:
        """An arch from ``{decision: label}``; decisions not given take ``default`` (the teacher op)."""
        labels = dict(labels or {})
        unknown = set(labels) - set(self._by_name)
        if unknown:
            raise ConfigError(f"unknown decision(s) {sorted(unknown)}", source=self.source, allowed=list(self._by_name))
        choices = []
        for d in self.decisions:
            label = labels.get(d.name, default)
            if label is None:
                raise ConfigError(f"no choice for decision '{d.name}'", source=self.source)
            choices.append((d.name, label))
        arch = Arch(tuple(choices))
        self.validate(arch)
        return arch

    def teacher_arch(self) -> Arch:
        """The arch that keeps every unit of the teacher."""
        return self.arch()

    def validate(self, arch: Arch) -> None:
        names = tuple(name for name, _ in arch.choices)
        if names != tuple(d.name for d in self.decisions):
            raise ConfigError("arch does not cover this space's decisions", source=self.source, key="arch",
                              allowed=", ".join(d.name for d in self.decisions))
        for decision, (_, label) in zip(self.decisions, arch.choices):
            if label not in {c.label for c in decision.candidates}:
                raise ConfigError(f"unknown candidate '{label}'", source=self.source, key=decision.name,
                                  allowed=[c.label for c in decision.candidates])

    def parse(self, text: str) -> Arch:
        """Parse an arch string (``str(arch)``); decisions left out keep the teacher op."""
        try:
            pairs = split_arch_string(text)
        except ValueError as err:
            raise ConfigError(f"malformed arch string: {err}", source=self.source, key="arch",
                              allowed=f"'stage:K=label,...;stage:...' with K in {sorted(KIND_LETTERS.values())}") from None
        return self.arch(dict(pairs))

    def encode(self, arch: Arch) -> np.ndarray:
        """Candidate indices, shape ``(n_decisions,)``."""
        self.validate(arch)
        return np.array([d.index(label) for d, (_, label) in zip(self.decisions, arch.choices)], dtype=np.int64)

    def decode(self, indices: np.ndarray | list[int]) -> Arch:
        return Arch(tuple((d.name, d.candidates[int(i)].label) for d, i in zip(self.decisions, indices, strict=True)))

    def one_hot(self, arch: Arch) -> np.ndarray:
        """Concatenated one-hot encodings, shape ``(sum(cardinalities),)``."""
        out = np.zeros(sum(self.cardinalities), dtype=np.float64)
        offsets = np.cumsum((0, *self.cardinalities[:-1]))
        out[offsets + self.encode(arch)] = 1.0
        return out

    def sample(self, rng: np.random.Generator) -> Arch:
        """A uniformly random arch."""
        return self.decode([rng.integers(n) for n in self.cardinalities])

    def mutate(self, arch: Arch, rng: np.random.Generator, n_changes: int = 1) -> Arch:
        """Change ``n_changes`` random decisions to a different candidate (decisions with one candidate stay)."""
        indices = self.encode(arch)
        mutable = [i for i, n in enumerate(self.cardinalities) if n > 1]
        for i in rng.choice(mutable, size=min(n_changes, len(mutable)), replace=False):
            indices[i] = (indices[i] + rng.integers(1, self.cardinalities[i])) % self.cardinalities[i]
        return self.decode(indices)

    def crossover(self, a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
        """Uniform crossover: each decision from ``a`` or ``b`` with equal probability."""
        take_a = rng.random(len(self.decisions)) < 0.5
        return self.decode(np.where(take_a, self.encode(a), self.encode(b)))

    def enumerate(self) -> Iterator[Arch]:
        """Every arch, in index order (only sensible for small spaces)."""
        for indices in itertools.product(*(range(n) for n in self.cardinalities)):
            yield self.decode(indices)

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, teacher={self.teacher!r}, decisions={len(self.decisions)}, size={self.size})"
