"""Exact reuse of a UNet's top-level block outputs across archs that share their upstream choices.

A diffusers UNet's forward calls its top-level blocks (``conv_in``, the time embedding, each down/mid/up block,
``conv_out``, ...) in a fixed order, and each block is fed only by the fixed inputs and by blocks called before it.
So, for one validation batch, a block's output is a function of the choices of the searchable units inside it and
inside every block called before it in that forward. :class:`PrefixMemo` keeps the last output of every block per
batch under that key and returns a copy of it when the next arch has the same key: the teacher prefix ahead of the
first searchable unit is computed once, and archs taken in index order (the last decisions change fastest) share
long prefixes. The scores are bit for bit those of a full forward (the same tensors reach the rest of the network).
Memory: at most one output per block and batch (what one forward holds anyway).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


def _copy(value: Any) -> Any:
    """A copy of a tensor or (nested) tuple of tensors; ``None`` for anything else (not memoised)."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, tuple):
        items = [_copy(v) for v in value]
        return None if any(i is None for i in items) else tuple(items)
    return None


def top_blocks(unet: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules the UNet's forward calls directly: its children, with each ModuleList replaced by its items."""
    blocks = []
    for name, child in unet.named_children():
        if isinstance(child, nn.ModuleList):
            blocks += [(f"{name}.{i}", item) for i, item in enumerate(child)]
        else:
            blocks.append((name, child))
    return blocks


class PrefixMemo:
    """Memoised top-level blocks of ``unet`` whose searchable units are ``unit_paths`` (see the module doc)."""

    def __init__(self, unet: nn.Module, unit_paths: list[str]) -> None:
        self.blocks = top_blocks(unet)
        self.units = {name: [p for p in unit_paths if p == name or p.startswith(name + ".")] for name, _ in self.blocks}
        self.entries: dict[tuple[str, int, int], tuple[tuple[str, ...], Any]] = {}
        self.hits = self.misses = 0

    @contextlib.contextmanager
    def active(self, labels: dict[str, str], batch: int) -> Iterator[None]:
        """One forward of validation batch ``batch`` with the arch whose unit labels are ``labels``."""
        prefix: list[str] = []
        calls: dict[str, int] = {}

        def patched(name: str, module: nn.Module) -> Any:
            original = module.forward

            def forward(*args: Any, **kwargs: Any) -> Any:
                prefix.extend(labels[p] for p in self.units[name])
                calls[name] = calls.get(name, 0) + 1
                slot, key = (name, batch, calls[name]), tuple(prefix)
                entry = self.entries.get(slot)
                if entry is not None and entry[0] == key:
                    self.hits += 1
                    return _copy(entry[1])
                self.misses += 1
                output = original(*args, **kwargs)
                stored = _copy(output)
                if stored is None:
                    self.entries.pop(slot, None)
                else:
                    self.entries[slot] = (key, stored)
                return output
            return forward

        for name, module in self.blocks:
            module.forward = patched(name, module)  # an instance attribute: hooks and attributes stay as they are
        try:
            yield
        finally:
            for _, module in self.blocks:
                del module.forward
