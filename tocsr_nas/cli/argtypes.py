"""Argument types with ranges, so argparse refuses ``--steps 0`` or ``--eta -1`` as a one-line usage error."""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _ranged(cast: Callable[[str], float], low: float | None, high: float | None, name: str) -> Callable[[str], float]:
    bounds = (f"between {low} and {high}" if low is not None and high is not None
              else f">= {low}" if low is not None else f"<= {high}")

    def parse(text: str) -> float:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {name} {bounds}, got '{text}'") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number {bounds}, got {text}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {text}")
        return value

    parse.__name__ = name
    return parse


def int_range(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An ``int`` in ``[low, high]`` (either bound optional)."""
    return _ranged(int, low, high, "an integer")  # type: ignore[return-value]


def float_range(low: float | None = None, high: float | None = None) -> Callable[[str], float]:
    """A finite ``float`` in ``[low, high]`` (either bound optional)."""
    return _ranged(float, low, high, "a number")


positive_int = int_range(1)
non_negative_int = int_range(0)
seed_int = int_range(0, 2**32 - 1)
