"""Architectures: one candidate choice per decision of a search space.

An :class:`Arch` is immutable and hashable. Its string form groups choices by stage,
``down.0:R=slim(width=0.5),A=T;mid:R=T,A=lin``, and parses back with ``SearchSpace.parse``. ``arch_id`` is a
stable hash of that canonical string.
"""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator

KIND_LETTERS = {"resnet": "R", "transformer": "A", "downsampler": "D", "upsampler": "U"}
LETTER_KINDS = {letter: kind for kind, letter in KIND_LETTERS.items()}


def decision_name(stage: str, kind: str) -> str:
    """The name of the decision for ``kind`` units in ``stage``, e.g. ``down.1:R``."""
    return f"{stage}:{KIND_LETTERS[kind]}"


@dataclasses.dataclass(frozen=True)
class Arch:
    """Candidate labels per decision, in the search space's decision order."""

    choices: tuple[tuple[str, str], ...]  # (decision name, candidate label)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.choices)

    def __getitem__(self, decision: str) -> str:
        for name, label in self.choices:
            if name == decision:
                return label
        raise KeyError(decision)

    def __str__(self) -> str:
        stages: dict[str, list[str]] = {}
        for name, label in self.choices:
            stage, letter = name.rsplit(":", 1)
            stages.setdefault(stage, []).append(f"{letter}={label}")
        return ";".join(f"{stage}:{','.join(parts)}" for stage, parts in stages.items())

    @property
    def arch_id(self) -> str:
        """A stable 12-hex-digit id (SHA-1 of the canonical string)."""
        return hashlib.sha1(str(self).encode()).hexdigest()[:12]


def split_arch_string(text: str) -> list[tuple[str, str]]:
    """``"s:R=a,A=b;t:R=c"`` -> ``[("s:R", "a"), ("s:A", "b"), ("t:R", "c")]``; commas inside ``(...)`` are kept.

    Raises:
        ValueError: the string is not of that form (the caller turns it into a ConfigError).
    """
    pairs = []
    for stage_part in _split_top_level(text.strip(), ";"):
        stage, sep, body = stage_part.partition(":")
        if not sep or not stage or not body:
            raise ValueError(f"expected 'stage:K=label,...', got '{stage_part}'")
        for choice in _split_top_level(body, ","):
            letter, sep, label = choice.partition("=")
            if not sep or letter not in LETTER_KINDS or not label:
                raise ValueError(f"expected K=label with K in {sorted(LETTER_KINDS)}, got '{choice}' in stage '{stage}'")
            pairs.append((f"{stage}:{letter}", label))
    return pairs


def _split_top_level(text: str, separator: str) -> list[str]:
    parts, depth, current = [], 0, []
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            raise ValueError(f"unbalanced ')' in '{text}'")
        if char == separator and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise ValueError(f"unbalanced '(' in '{text}'")
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]
