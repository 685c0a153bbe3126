"""Small sampling helpers that draw only from an explicit ``torch.Generator`` (never global state)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import torch

T = TypeVar("T")


def as_generator(seed_or_generator: torch.Generator | int) -> torch.Generator:
    """Return the generator itself, or a fresh CPU generator seeded with the given int."""
    if isinstance(seed_or_generator, torch.Generator):
        return seed_or_generator
    if isinstance(seed_or_generator, int) and not isinstance(seed_or_generator, bool):
        return torch.Generator().manual_seed(seed_or_generator)
    raise TypeError(f"expected a torch.Generator or an int seed, got {type(seed_or_generator).__name__}")


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    """One float uniformly from ``[low, high)`` (``low`` itself when the range is empty)."""
    return low + (high - low) * torch.rand((), generator=generator, dtype=torch.float64).item()


def bernoulli(generator: torch.Generator, prob: float) -> bool:
    """True with probability ``prob``; draws one number even for ``prob`` 0 or 1, so streams stay aligned."""
    return torch.rand((), generator=generator, dtype=torch.float64).item() < prob


def randint(generator: torch.Generator, low: int, high: int) -> int:
    """One integer uniformly from ``[low, high]`` (inclusive)."""
    return int(torch.randint(low, high + 1, (), generator=generator).item())


def choice(generator: torch.Generator, items: Sequence[T], probs: Sequence[float] | None = None) -> T:
    """One item, uniformly or with the given probabilities."""
    if probs is None:
        return items[randint(generator, 0, len(items) - 1)]
    weights = torch.tensor(list(probs), dtype=torch.float64)
    return items[int(torch.multinomial(weights, 1, generator=generator).item())]
