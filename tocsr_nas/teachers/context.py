"""Context providers: where a teacher's ``encoder_hidden_states`` come from.

The toolkit has no text encoder. A teacher is conditioned either on a learned "null" context (a trainable
``(length, dim)`` tensor, the default) or on precomputed embeddings stored in a safetensors file.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..atomic import read_safetensors
from ..errors import ConfigError

EMBEDDING_KEY = "encoder_hidden_states"


class ContextProvider(nn.Module):
    """Base class: ``provider(batch_size) -> (batch_size, length, dim)`` context tensor."""

    length: int
    dim: int

    def forward(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError


class LearnedContext(ContextProvider):
    """A learned, input-independent context of ``length`` tokens (the unconditional/null context)."""

    def __init__(self, length: int, dim: int) -> None:
        super().__init__()
        self.length, self.dim = length, dim
        self.tokens = nn.Parameter(torch.zeros(length, dim))

    def forward(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.tokens.unsqueeze(0).expand(batch_size, -1, -1)


class EmbeddingContext(ContextProvider):
    """Precomputed embeddings: a safetensors file with ``encoder_hidden_states`` of shape ``(L, D)`` or ``(N, L, D)``.

    With ``N`` embeddings, each call draws ``batch_size`` of them with ``generator`` (row 0 when none is given).
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        path = Path(path)
        if not path.is_file():
            raise ConfigError("embedding file not found", source=path)
        tensors, _ = read_safetensors(path)
        if EMBEDDING_KEY not in tensors:
            raise ConfigError("missing tensor", source=path, key=EMBEDDING_KEY, allowed=list(tensors))
        table = tensors[EMBEDDING_KEY].float()
        if table.dim() == 2:
            table = table.unsqueeze(0)
        if table.dim() != 3:
            raise ConfigError(f"expected shape (L, D) or (N, L, D), got {tuple(table.shape)}", source=path, key=EMBEDDING_KEY)
        self.register_buffer("table", table, persistent=False)
        self.length, self.dim = table.shape[1], table.shape[2]

    def forward(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if generator is None:
            index = torch.zeros(batch_size, dtype=torch.long)
        else:
            index = torch.randint(len(self.table), (batch_size,), generator=generator)
        return self.table[index.to(self.table.device)]
