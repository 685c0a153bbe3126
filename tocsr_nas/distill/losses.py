"""Feature losses between a candidate's output and the teacher unit's output, and the held-out relative error."""
from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import ConfigError

EPS = 1e-8


def mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error."""
    return (prediction - target).square().mean()


def channel_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE with each channel's error divided by that channel's variance in ``target`` (over batch and space)."""
    dims = [d for d in range(target.dim()) if d != 1]
    variance = target.var(dim=dims, keepdim=True, unbiased=False)
    return ((prediction - target).square() / (variance + EPS)).mean()


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"mse": mse, "channel_mse": channel_mse}


def get_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss called ``name``."""
    if name not in LOSSES:
        raise ConfigError(f"unknown loss '{name}'", key="loss", allowed=list(LOSSES))
    return LOSSES[name]


class RelativeError:
    """Accumulates ``sum squared error / sum squared deviation of the target`` over held-out batches.

    The ratio is the MSE divided by the teacher output's variance (pooled over all held-out elements).
    """

    def __init__(self) -> None:
        self.squared_error = 0.0
        self.count = 0
        self.sum = 0.0
        self.sum_sq = 0.0

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        target64 = target.double()
        self.squared_error += float((prediction.double() - target64).square().sum())
        self.count += target.numel()
        self.sum += float(target64.sum())
        self.sum_sq += float(target64.square().sum())

    def value(self) -> float:
        mean = self.sum / self.count
        variance = max(self.sum_sq / self.count - mean * mean, EPS)
        return (self.squared_error / self.count) / variance


__all__ = ["LOSSES", "RelativeError", "channel_mse", "get_loss", "mse"]
