"""Calls of torch modules through ONNX Runtime on the CPU, for the latency table's ``onnxruntime`` runtime.

A module is exported with torch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``): the
``torch.export``-based default needs the extra package ``onnxscript`` and takes far longer per module, while the
TorchScript exporter handles every unit and whole UNet of the built-in spaces. The export happens on the first call
(so a fully cached latency table exports nothing); later calls run the ONNX Runtime session alone.
"""
from __future__ import annotations

import importlib.util
import io
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..units import unit_output

OPSET = 17


def require_onnxruntime() -> None:
    """Refuse, in one line, when ONNX Runtime or the ONNX package is not installed."""
    missing = [name for name in ("onnxruntime", "onnx") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"runtime 'onnxruntime' needs the package(s) {', '.join(missing)} "
                          "(pip install 'tocsr-nas[onnx]')", key="runtime")


class _TensorInputs(nn.Module):
    """``module(*args, **kwargs)`` as a function of the tensors among them only (the rest fixed), returning one tensor."""

    def __init__(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.inner = module
        self.fixed_args, self.fixed_kwargs = list(args), dict(kwargs)
        self.slots = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
        self.names = [k for k, v in kwargs.items() if isinstance(v, torch.Tensor)]

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return (*(self.fixed_args[i] for i in self.slots), *(self.fixed_kwargs[k] for k in self.names))

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        args, kwargs = list(self.fixed_args), dict(self.fixed_kwargs)
        for i, value in zip(self.slots, tensors):
            args[i] = value
        kwargs.update(zip(self.names, tensors[len(self.slots):]))
        return unit_output(self.inner(*args, **kwargs))


def export_onnx(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[bytes, list[np.ndarray]]:
    """The ONNX model of ``module(*args, **kwargs)`` (bytes) and its inputs as arrays, in order."""
    wrapped = _TensorInputs(module, args, kwargs).eval()
    tensors = wrapped.tensors()
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(wrapped, tensors, buffer, dynamo=False, opset_version=OPSET,
                          input_names=[f"input{i}" for i in range(len(tensors))], output_names=["output"])
    return buffer.getvalue(), [t.detach().cpu().numpy() for t in tensors]


def session_call(model: bytes, inputs: list[np.ndarray], threads: int) -> Callable[[], Any]:
    """A zero-argument run of ``model`` on ``inputs`` in a CPU session with ``threads`` intra-op threads."""
    import onnxruntime as ort  # noqa: PLC0415 (optional dependency)

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    feeds = {node.name: value for node, value in zip(session.get_inputs(), inputs)}
    return lambda: session.run(None, feeds)


class OnnxRuntimeCall:
    """A zero-argument call of ``module(*args, **kwargs)`` in ONNX Runtime; exported on the first call."""

    def __init__(self, module: nn.Module, args: tuple, kwargs: dict[str, Any], threads: int) -> None:
        self.module: nn.Module | None = module
        self.args, self.kwargs, self.threads = args, kwargs, threads
        self.run: Callable[[], Any] | None = None

    def __call__(self) -> Any:
        if self.run is None:
            model, inputs = export_onnx(self.module, self.args, self.kwargs)
            self.run = session_call(model, inputs, self.threads)
            self.module = self.args = self.kwargs = None  # the session holds its own copy of the weights
        return self.run()
