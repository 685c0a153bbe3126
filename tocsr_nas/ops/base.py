"""Base classes that give a surrogate block the exact call signature of the diffusers unit it replaces."""
from __future__ import annotations

from typing import Any

import torch
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from torch import nn


class ResnetOp(nn.Module):
    """Replaces a ``ResnetBlock2D``: ``forward(hidden_states, temb) -> hidden_states``.

    Subclasses implement :meth:`block`; ``temb`` is ``(B, temb_channels)`` or ``None``.
    """

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor | None = None, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.block(hidden_states, temb)

    def block(self, hidden_states: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


class TransformerOp(nn.Module):
    """Replaces a ``Transformer2DModel``: same keyword interface, returns a tuple or a ``Transformer2DModelOutput``.

    Subclasses implement :meth:`block` on ``hidden_states (B, C, H, W)`` and ``encoder_hidden_states (B, L, D)``.
    """

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        timestep: torch.Tensor | None = None,
        added_cond_kwargs: dict[str, Any] | None = None,
        class_labels: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> Transformer2DModelOutput | tuple[torch.Tensor]:
        output = self.block(hidden_states, encoder_hidden_states)
        return Transformer2DModelOutput(sample=output) if return_dict else (output,)

    def block(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError
