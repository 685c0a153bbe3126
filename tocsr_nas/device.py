"""The one way to choose the hardware and the precision a network runs in.

``resolve_device("auto"|"cpu"|"cuda"|"cuda:N")``: ``auto`` is the GPU when torch sees one, else the CPU; asking
for CUDA without one (or an index past the last GPU) is a one-line :class:`~tocsr_nas.errors.ConfigError`,
never a silent fallback. ``resolve_dtype`` checks that the device really runs a UNet's ops in that dtype (a
small probe, cached). Frozen networks (the teacher) run under :func:`autocast` in the chosen dtype; trainable
weights stay float32 (master weights), and activations handed to them are cast back with :func:`to_float`.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")
DTYPES = ("float32", "bfloat16", "float16")  # torch is imported by the functions only: the CLI stays fast


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The device ``spec`` names (see module docstring)."""
    import torch  # noqa: PLC0415

    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    kind, _, index = spec.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise ConfigError(f"unknown device '{spec}'", key="device", allowed=DEVICE_CHOICES)
    if not torch.cuda.is_available():
        raise ConfigError(f"device '{spec}' asked for, but torch sees no CUDA GPU", key="device",
                          allowed="auto, cpu")
    count = torch.cuda.device_count()
    number = int(index or 0)
    if number >= count:
        raise ConfigError(f"device '{spec}' asked for, but torch sees {count} GPU(s)", key="device",
                          allowed=", ".join(["auto", "cpu", "cuda", *(f"cuda:{i}" for i in range(count))]))
    return torch.device("cuda", number)


def resolve_dtype(name: str | torch.dtype, device: torch.device) -> torch.dtype:
    """The torch dtype ``name``; refused when ``device`` cannot run a UNet's ops in it."""
    import torch  # noqa: PLC0415

    name = str(name).removeprefix("torch.").strip().lower()
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype '{name}'", key="dtype", allowed=DTYPES)
    problem = _unsupported(str(device), name)
    if problem is not None:
        allowed = [other for other in DTYPES if _unsupported(str(device), other) is None]
        raise ConfigError(f"dtype {name} does not run on {device}: {problem}", key="dtype", allowed=allowed)
    return getattr(torch, name)


@functools.cache
def _unsupported(device: str, name: str) -> str | None:
    """``None`` when conv, group norm, linear, attention and their backward run in ``name`` on ``device``."""
    import torch  # noqa: PLC0415

    dtype = getattr(torch, name)
    if dtype == torch.float32:
        return None
    if device.startswith("cuda") and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        return "this GPU has no bfloat16 support"
    try:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(2, 8, 4, 4, generator=generator).to(device)
        conv = torch.nn.Conv2d(8, 8, 3, padding=1).to(device)
        norm = torch.nn.GroupNorm(2, 8).to(device)
        linear = torch.nn.Linear(8, 8).to(device)
        with autocast(torch.device(device), dtype):
            h = norm(conv(x)).flatten(2).transpose(1, 2)
            h = linear(torch.nn.functional.scaled_dot_product_attention(h, h, h))
        h.float().square().mean().backward()
        if not torch.isfinite(h.float()).all():
            return "non-finite results"
    except (RuntimeError, NotImplementedError) as err:
        return str(err).splitlines()[0]
    return None


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device`` (a no-op for float32)."""
    import torch  # noqa: PLC0415

    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_float(tensor: torch.Tensor | None) -> torch.Tensor | None:
    """``tensor`` as float32 if it is a reduced-precision float (what fp32 master weights train on)."""
    if tensor is None or not tensor.is_floating_point() or tensor.itemsize >= 4:
        return tensor
    return tensor.float()


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, float]]:
    """Measure the peak memory of the block, in bytes above what was in use when it started.

    CUDA: ``torch.cuda.max_memory_allocated`` (reset on entry). CPU: the process's peak resident set
    (``VmHWM``), reset on entry by writing ``5`` to ``/proc/self/clear_refs`` (Linux); memory the allocator
    re-uses without growing the process is not seen (see :func:`track_cpu_memory`), so the CPU figure is a lower
    bound of what the block needs.
    Yields a dict filled on exit with ``start`` (bytes in use at entry), ``peak`` and ``delta``.
    """
    import torch  # noqa: PLC0415

    result: dict[str, float] = {}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        yield result
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
    else:
        start = _reset_peak_rss()
        yield result
        peak = max(_status_bytes("VmHWM"), start)
    result.update(start=float(start), peak=float(peak), delta=float(peak - start))


def track_cpu_memory() -> None:
    """Make this process's resident set follow its tensor memory (Linux/glibc; elsewhere a no-op).

    glibc raises its mmap threshold after large blocks are freed, so later tensors come from the heap and re-use
    freed pages: the resident set then neither shrinks when tensors are freed nor grows when they are
    re-allocated, and a peak-RSS probe sees nothing. A fixed 128 KiB threshold maps every larger block on its
    own and returns it on free, at the cost of more page faults.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD (fixing it also turns the dynamic threshold off)
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def current_memory(device: torch.device) -> int:
    """Bytes in use now: allocated on the GPU, or this process's resident set on the CPU."""
    import torch  # noqa: PLC0415

    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    return _status_bytes("VmRSS")


def _reset_peak_rss() -> int:
    try:
        with open("/proc/self/clear_refs", "w") as stream:
            stream.write("5")
    except OSError:  # not Linux, or not allowed: the peak then covers the whole process life (an upper bound)
        pass
    return _status_bytes("VmRSS")


def _status_bytes(field: str) -> int:
    try:
        with open("/proc/self/status") as stream:
            for line in stream:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource  # noqa: PLC0415

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def add_device_args(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--dtype`` for a command that runs a network."""
    parser.add_argument("--device", default=None,
                        help="auto (the GPU when torch sees one), cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--dtype", default=None, choices=DTYPES,
                        help="autocast precision the networks run in; weights that train stay float32 "
                             "(default: float32)")


def device_from_args(args: argparse.Namespace) -> tuple[torch.device, torch.dtype]:
    """The device and dtype ``--device``/``--dtype`` ask for (a one-line error when they cannot run)."""
    device = resolve_device(getattr(args, "device", None) or "auto")
    return device, resolve_dtype(getattr(args, "dtype", None) or "float32", device)


def device_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``device``/``dtype`` keys a command line sets, for a config's data (unset flags are left out)."""
    return {key: getattr(args, key) for key in ("device", "dtype") if getattr(args, key, None) is not None}


__all__ = ["DEVICE_CHOICES", "DTYPES", "add_device_args", "autocast", "current_memory", "device_from_args",
           "device_overrides", "peak_memory", "resolve_device", "resolve_dtype", "to_float", "track_cpu_memory"]
