"""The unit graph: the replaceable modules of a diffusers UNet, their shapes, data flow and skip connections.

A *unit* is one ``ResnetBlock2D`` or ``Transformer2DModel`` of a down, mid or up block (and, optionally for
search spaces, each ``Downsample2D``/``Upsample2D``). :func:`build_unit_graph` runs the UNet once at a given
latent size with forward hooks to record every unit's input/output shapes and call order, and adds the
skip connections from the down path to the up-path resnets that consume them.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

import networkx as nx
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.downsampling import Downsample2D
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from diffusers.models.upsampling import Upsample2D
from torch import nn

UNIT_CLASSES: dict[type[nn.Module], str] = {
    ResnetBlock2D: "resnet",
    Transformer2DModel: "transformer",
    Downsample2D: "downsampler",
    Upsample2D: "upsampler",
}
_UNIT_PATH = re.compile(r"^(down_blocks\.\d+|up_blocks\.\d+|mid_block)\.(resnets|attentions|downsamplers|upsamplers)\.\d+$")


@dataclasses.dataclass(frozen=True)
class UnitInfo:
    """One replaceable unit, with shapes recorded at the graph's latent size (batch dimension dropped)."""

    path: str
    kind: str  # resnet | transformer | downsampler | upsampler
    module_type: str
    in_shape: tuple[int, int, int]  # (C, H, W)
    out_shape: tuple[int, int, int]
    temb_channels: int | None = None  # resnets: the time-embedding width they receive
    context_shape: tuple[int, int] | None = None  # transformers: (tokens, dim) of encoder_hidden_states
    order: int = 0  # position in the forward pass
    skip_channels: int | None = None  # up-block resnets: channels of the skip tensor concatenated to their input

    @property
    def in_channels(self) -> int:
        return self.in_shape[0]

    @property
    def out_channels(self) -> int:
        return self.out_shape[0]

    @property
    def block(self) -> str:
        """The enclosing block, e.g. ``down_blocks.1`` or ``mid_block``."""
        return self.path.rsplit(".", 2)[0]


def iter_unit_modules(unet: nn.Module) -> Iterator[tuple[str, str, nn.Module]]:
    """``(path, kind, module)`` for every replaceable unit of ``unet``, in module-definition order."""
    for path, module in unet.named_modules():
        kind = UNIT_CLASSES.get(type(module))
        if kind is not None and _UNIT_PATH.match(path):
            yield path, kind, module


def _first_tensor(value: object) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        return _first_tensor(value[0])
    return value.sample  # diffusers output dataclasses


@torch.no_grad()
def record_units(unet: UNet2DConditionModel, inputs: dict[str, torch.Tensor]) -> dict[str, UnitInfo]:
    """Run ``unet(**inputs)`` once with hooks and return the :class:`UnitInfo` of every unit, in call order."""
    records: dict[str, UnitInfo] = {}
    handles = []

    def hook(path: str, kind: str):
        def record(module: nn.Module, args: tuple, kwargs: dict, output: object) -> None:
            hidden = args[0] if args else kwargs["hidden_states"]
            temb = args[1] if len(args) > 1 else kwargs.get("temb")
            context = kwargs.get("encoder_hidden_states")
            records[path] = UnitInfo(
                path=path,
                kind=kind,
                module_type=type(module).__name__,
                in_shape=tuple(hidden.shape[1:]),
                out_shape=tuple(_first_tensor(output).shape[1:]),
                temb_channels=int(temb.shape[-1]) if kind == "resnet" and temb is not None else None,
                context_shape=tuple(context.shape[1:]) if kind == "transformer" and context is not None else None,
                order=len(records),
            )

        return record

    for path, kind, module in iter_unit_modules(unet):
        handles.append(module.register_forward_hook(hook(path, kind), with_kwargs=True))
    try:
        unet(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    return records


def _skip_edges(unet: UNet2DConditionModel, units: dict[str, UnitInfo]) -> list[tuple[str, str]]:
    """(producer, consumer) pairs for the skip connections, following diffusers' residual stack."""
    stack = ["conv_in"]
    for i, block in enumerate(unet.down_blocks):
        has_attention = hasattr(block, "attentions") and block.attentions is not None and len(block.attentions) > 0
        for j in range(len(block.resnets)):
            stack.append(f"down_blocks.{i}.{'attentions' if has_attention else 'resnets'}.{j}")
        if block.downsamplers is not None:
            stack.append(f"down_blocks.{i}.downsamplers.0")
    edges = []
    for i, block in enumerate(unet.up_blocks):
        for j in range(len(block.resnets)):
            edges.append((stack.pop(), f"up_blocks.{i}.resnets.{j}"))
    return [(src, dst) for src, dst in edges if dst in units]


def build_unit_graph(unet: UNet2DConditionModel, inputs: dict[str, torch.Tensor]) -> nx.DiGraph:
    """The unit graph of ``unet`` at the shapes of ``inputs``.

    Nodes are unit paths (attribute ``info``: :class:`UnitInfo`) plus ``conv_in``/``conv_out``; edges have
    ``kind="flow"`` (consecutive in the forward pass) or ``kind="skip"`` (down-path output to up-path resnet).
    """
    units = record_units(unet, inputs)
    graph = nx.DiGraph()
    graph.add_node("conv_in", info=None)
    ordered = sorted(units.values(), key=lambda u: u.order)
    for unit in ordered:
        graph.add_node(unit.path, info=unit)
    graph.add_node("conv_out", info=None)
    chain = ["conv_in", *(u.path for u in ordered), "conv_out"]
    for src, dst in zip(chain, chain[1:]):
        graph.add_edge(src, dst, kind="flow")
    for src, dst in _skip_edges(unet, units):
        graph.add_edge(src, dst, kind="skip")
        producer = units.get(src)
        channels = int(unet.conv_in.out_channels) if src == "conv_in" else producer.out_channels if producer else None
        graph.nodes[dst]["info"] = dataclasses.replace(units[dst], skip_channels=channels)
    return graph


def unit_infos(graph: nx.DiGraph) -> list[UnitInfo]:
    """The units of a graph in forward order."""
    return [data["info"] for _, data in graph.nodes(data=True) if data["info"] is not None]


def example_unit_call(unit: UnitInfo, batch_size: int = 1, generator: torch.Generator | None = None,
                      device: torch.device | str = "cpu") -> tuple[tuple[torch.Tensor, ...], dict[str, object]]:
    """Random ``(args, kwargs)`` that call a module in ``unit``'s place exactly as diffusers calls the unit."""
    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(batch_size, *shape, generator=generator).to(device)

    hidden = randn(*unit.in_shape)
    if unit.kind == "resnet":
        temb = randn(unit.temb_channels) if unit.temb_channels is not None else None
        return (hidden, temb), {}
    if unit.kind == "transformer":
        context = randn(*unit.context_shape) if unit.context_shape is not None else None
        return (hidden,), {"encoder_hidden_states": context, "return_dict": False}
    return (hidden,), {}


def unit_output(output: object) -> torch.Tensor:
    """The output tensor of a unit call (transformers return a tuple or a dataclass)."""
    return _first_tensor(output)
