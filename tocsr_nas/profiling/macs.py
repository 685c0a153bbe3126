"""Parameter and MAC counting for UNets and their blocks.

MACs are counted with fvcore's ``FlopCountAnalysis`` (one MAC per multiply-add for conv, linear, matmul,
bmm and einsum; fvcore's own estimates for norms and upsampling), plus a handler for
``aten::scaled_dot_product_attention``, which diffusers' ``AttnProcessor2_0`` calls and which fvcore would
otherwise skip. Every count keeps the attention-matmul part separate (:class:`MacCount`) so that both the
"with attention" figure and the BK-SDM convention (attention matmuls left out) can be reported.

fvcore traces with ``torch.jit.trace``: keyword arguments are bound by an adapter, and diffusers outputs
(``.sample``, tuples) are unwrapped to tensors, so any ``module(*args, **kwargs)`` call can be counted.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import get_shape
from torch import nn

logger = logging.getLogger(__name__)

SDPA_OP = "aten::scaled_dot_product_attention"
ATTENTION_KEY = "scaled_dot_product_attention"  # how fvcore names the SDPA handler's counts per operator
_ADAPTER_CHILD = "module"


@dataclasses.dataclass(frozen=True)
class MacCount:
    """MACs of one forward call.

    Attributes:
        macs: fvcore count (1 MAC per multiply-add), including the attention matmuls inside
            ``scaled_dot_product_attention``.
        attention_macs: the part of ``macs`` that comes from ``scaled_dot_product_attention``.
    """

    macs: int
    attention_macs: int = 0

    @property
    def macs_no_attention(self) -> int:
        """MACs without the attention matmuls (the BK-SDM paper's convention)."""
        return self.macs - self.attention_macs

    def __add__(self, other: MacCount) -> MacCount:
        if not isinstance(other, MacCount):
            return NotImplemented
        return MacCount(self.macs + other.macs, self.attention_macs + other.attention_macs)

    def __sub__(self, other: MacCount) -> MacCount:
        if not isinstance(other, MacCount):
            return NotImplemented
        return MacCount(self.macs - other.macs, self.attention_macs - other.attention_macs)


def count_params(module: nn.Module) -> int:
    """Number of parameters of ``module`` (shared parameters counted once, frozen ones included)."""
    return sum(p.numel() for p in module.parameters())


def sdpa_macs(query_shape: Sequence[int], key_shape: Sequence[int], value_shape: Sequence[int]) -> int:
    """MACs of ``scaled_dot_product_attention`` from its input shapes: ``B*H*Lq*Lk*(d_qk + d_v)``.

    ``Q @ K^T`` costs ``Lq*Lk*d_qk`` and ``softmax(.) @ V`` costs ``Lq*Lk*d_v`` per batch-and-head; the
    softmax and scaling are not multiply-adds and are left out. Leading dimensions of the query (batch,
    heads) multiply the count, so grouped-query attention is counted per query head.

    Args:
        query_shape: ``(..., Lq, d_qk)``.
        key_shape: ``(..., Lk, d_qk)``.
        value_shape: ``(..., Lk, d_v)``.
    """
    if min(len(query_shape), len(key_shape), len(value_shape)) < 2:
        raise ValueError(f"attention inputs need at least 2 dims, got {query_shape}, {key_shape}, {value_shape}")
    *batch, length_q, dim_qk = (int(s) for s in query_shape)
    length_k, dim_v = int(key_shape[-2]), int(value_shape[-1])
    return math.prod(batch) * length_q * length_k * (dim_qk + dim_v)


def _sdpa_handle(inputs: list[Any], outputs: list[Any]) -> int:
    """fvcore handle for ``aten::scaled_dot_product_attention`` (inputs: query, key, value, ...)."""
    return sdpa_macs(get_shape(inputs[0]), get_shape(inputs[1]), get_shape(inputs[2]))


def count_macs(module: nn.Module, args: tuple, kwargs: dict | None = None) -> MacCount:
    """MACs of ``module(*args, **kwargs)``, attention matmuls counted separately.

    Args:
        module: any module; diffusers models are fine (their output is unwrapped).
        args: positional arguments of the call.
        kwargs: keyword arguments of the call; tensors among them are traced, the rest are constants.
    """
    by_operator = _analysis(module, args, kwargs).by_operator()
    return _mac_count(by_operator)


def count_macs_by_operator(module: nn.Module, args: tuple, kwargs: dict | None = None) -> dict[str, int]:
    """MACs of ``module(*args, **kwargs)`` per fvcore operator (``conv``, ``linear``, ``group_norm``, ...)."""
    return {name: int(value) for name, value in _analysis(module, args, kwargs).by_operator().items()}


def count_macs_by_module(module: nn.Module, args: tuple, kwargs: dict | None = None) -> dict[str, MacCount]:
    """MACs of ``module(*args, **kwargs)`` for the whole module and each submodule, from one trace.

    Returns:
        ``{"": whole module, path: submodule, ...}`` with every path of ``module.named_modules()``, in that
        order; a submodule the call never runs counts zero. A submodule that is reachable under several
        paths is listed once, under its first path.
    """
    per_module = _analysis(module, args, kwargs).by_module_and_operator()
    result: dict[str, MacCount] = {}
    for path, _ in module.named_modules():
        traced_name = f"{_ADAPTER_CHILD}.{path}" if path else _ADAPTER_CHILD
        result[path] = _mac_count(per_module.get(traced_name, Counter()))
    return result


def count_macs_ptflops(module: nn.Module, args: tuple, kwargs: dict | None = None, *, backend: str = "aten") -> int:
    """MACs of ``module(*args, **kwargs)`` counted by ptflops, as an independent cross-check.

    ptflops 0.7.5 has two backends:

    * ``"aten"`` (the default here): a ``TorchDispatchMode`` that counts ``aten.convolution`` and
      ``aten.mm/matmul/addmm/bmm`` only, bias additions included (one MAC per output element). It does
      NOT see attention: on CPU, ``scaled_dot_product_attention`` dispatches to a fused kernel
      (``_scaled_dot_product_flash_attention_for_cpu``) that ptflops treats as zero-op. Norms,
      activations and upsampling are not counted. So it should match fvcore's ``conv + linear`` part plus
      biases.
    * ``"pytorch"``: forward hooks on ``nn`` modules (conv and linear with bias, norms ``2*numel`` when
      affine, ``nn.Upsample``, a few activation modules) plus patched ``F.*`` functions (``F.silu``,
      ``F.gelu``, ``F.interpolate``, softmax, pools) and tensor methods (``torch.matmul``/``bmm``/
      ``baddbmm``, ``torch.add``/``mul``; not the ``+``/``*`` operators). It does not see
      ``F.scaled_dot_product_attention`` either.

    Args:
        backend: ``"aten"`` or ``"pytorch"``.

    Raises:
        ValueError: for an unknown backend.
        RuntimeError: when ptflops fails (it reports ``None``); the message carries its last output line.
    """
    from ptflops import get_model_complexity_info  # noqa: PLC0415 (optional cross-check, imported when used)

    if backend not in ("aten", "pytorch"):
        raise ValueError(f"unknown ptflops backend '{backend}' (allowed: aten, pytorch)")
    # The aten backend puts hooks on the model's children and never removes them: hide the module from it.
    adapter = _BoundCall(module, args, register=backend == "pytorch")
    call_kwargs = dict(kwargs or {})
    captured = io.StringIO()
    modes = {sub: sub.training for sub in module.modules()}  # ptflops switches to eval mode
    try:
        with torch.no_grad(), contextlib.redirect_stdout(captured):
            macs, _ = get_model_complexity_info(
                adapter, (1,), print_per_layer_stat=False, as_strings=False,
                input_constructor=lambda _resolution: call_kwargs, ost=captured, backend=backend,
            )
    finally:
        for sub, training in modes.items():
            sub.training = training
    if macs is None:
        lines = [line for line in captured.getvalue().splitlines() if line.strip()]
        raise RuntimeError(f"ptflops ({backend}) failed: {lines[-1] if lines else 'no output'}")
    return int(macs)


class _BoundCall(nn.Module):
    """Calls ``module(*args, **kwargs)`` with ``args`` bound.

    ``register=False`` keeps ``module`` out of the adapter's children (so no hooks reach it).
    """

    def __init__(self, module: nn.Module, args: tuple, register: bool) -> None:
        super().__init__()
        if register:
            self.module = module
        else:
            object.__setattr__(self, "module", module)
        self._args = tuple(args)

    def forward(self, **kwargs: Any) -> Any:
        return self.module(*self._args, **kwargs)


class _TraceAdapter(nn.Module):
    """Makes ``module(*args, **kwargs)`` traceable: tensors become positional inputs, outputs become tensors."""

    def __init__(self, module: nn.Module, args: tuple, kwargs: Mapping[str, Any]) -> None:
        super().__init__()
        setattr(self, _ADAPTER_CHILD, module)
        self._args = tuple(args)
        self._kwargs = dict(kwargs)
        self._arg_slots = [i for i, value in enumerate(self._args) if isinstance(value, torch.Tensor)]
        self._kwarg_slots = [name for name, value in self._kwargs.items() if isinstance(value, torch.Tensor)]

    def trace_inputs(self) -> tuple[torch.Tensor, ...]:
        """The tensors to pass to the trace, in the order :meth:`forward` expects them."""
        return tuple(self._args[i] for i in self._arg_slots) + tuple(self._kwargs[k] for k in self._kwarg_slots)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        args, kwargs = list(self._args), dict(self._kwargs)
        values = iter(tensors)
        for i in self._arg_slots:
            args[i] = next(values)
        for name in self._kwarg_slots:
            kwargs[name] = next(values)
        output = _tensors_of(getattr(self, _ADAPTER_CHILD)(*args, **kwargs))
        if not output:
            raise ValueError("the module returned no tensor, so it cannot be traced")
        return output[0] if len(output) == 1 else output


def _tensors_of(output: Any) -> tuple[torch.Tensor, ...]:
    """All tensors in a (possibly nested) output: diffusers ``BaseOutput``, tuples, lists, dicts."""
    if isinstance(output, torch.Tensor):
        return (output,)
    if hasattr(output, "to_tuple"):
        output = output.to_tuple()
    if isinstance(output, Mapping):
        output = tuple(output.values())
    if isinstance(output, (tuple, list)):
        return tuple(t for item in output for t in _tensors_of(item))
    return ()


def _analysis(module: nn.Module, args: tuple, kwargs: dict | None) -> FlopCountAnalysis:
    """A run fvcore analysis (default handles + the SDPA handle) of ``module(*args, **kwargs)``."""
    adapter = _TraceAdapter(module, args, kwargs or {})
    analysis = (
        FlopCountAnalysis(adapter, adapter.trace_inputs())
        .set_op_handle(SDPA_OP, _sdpa_handle)
        .unsupported_ops_warnings(False)
        .uncalled_modules_warnings(False)
        .tracer_warnings("none")
    )
    with torch.no_grad():
        analysis.total()  # runs the trace once; later queries reuse it
    if logger.isEnabledFor(logging.DEBUG):
        skipped = analysis.unsupported_ops()
        if skipped:
            logger.debug("ops not counted (no fvcore handle): %s", dict(skipped))
    return analysis


def _mac_count(by_operator: Mapping[str, float]) -> MacCount:
    total = sum(int(value) for value in by_operator.values())
    return MacCount(macs=total, attention_macs=int(by_operator.get(ATTENTION_KEY, 0)))
