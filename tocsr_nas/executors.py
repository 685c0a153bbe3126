"""Run a function over a list of items, in this process (``local``) or on Ray workers (``ray``).

Both executors offer the same two calls::

    with make_executor("ray", num_workers=2) as executor:
        results = executor.map(score, archs)          # ordered like ``archs``
        handles = [executor.submit(score, a) for a in archs]
        results = executor.gather(handles)

Functions and items sent to Ray must be picklable (module-level functions, plain data). ``address="auto"``
joins a running cluster; ``None`` starts a private local instance with ``num_workers`` CPUs. An address that
does not answer is a one-line :class:`~tocsr_nas.errors.ConfigError`, raised before any work starts.
"""
from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any, Literal, Protocol, TypeVar

import pydantic

from .errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

EXECUTOR_KINDS = ("local", "ray")
ADDRESS_TIMEOUT_S = 5.0


class ExecutorConfig(pydantic.BaseModel, extra="forbid"):
    """Where work runs: this process, or Ray workers (a private local instance, or a cluster to join)."""

    kind: Literal["local", "ray"] = "local"
    address: str | None = None  # ray: None starts a private local instance, "auto" joins a running cluster
    num_workers: int = pydantic.Field(2, gt=0)


class Executor(Protocol):
    """Submit/gather and map over items; a context manager that releases its workers on exit."""

    kind: str
    num_workers: int

    def submit(self, fn: Callable[..., R], *args: Any) -> Any:
        """Start ``fn(*args)``; returns a handle for :meth:`gather`."""
        ...

    def gather(self, handles: list[Any]) -> list[Any]:
        """The results of ``handles``, in order (re-raises the first failure)."""
        ...

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``[fn(item) for item in items]``, possibly in parallel."""
        ...

    def share(self, obj: Any) -> Any:
        """A handle to ``obj`` that ``submit`` arguments can carry cheaply (Ray: one object-store copy)."""
        ...

    def close(self) -> None:
        ...

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: object) -> None: ...


class LocalExecutor:
    """Runs everything in this process, one item after the other."""

    kind = "local"

    def __init__(self) -> None:
        self.num_workers = 1

    def submit(self, fn: Callable[..., R], *args: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as err:  # noqa: BLE001 (delivered by gather, as Ray does)
            future.set_exception(err)
        return future

    def gather(self, handles: list[Future]) -> list[Any]:
        return [handle.result() for handle in handles]

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        return self.gather([self.submit(fn, item) for item in items])

    def share(self, obj: Any) -> Any:
        return obj

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RayExecutor:
    """Runs each submitted call as a Ray task with ``cpus_per_task`` CPUs.

    Args:
        address: ``None`` for a private local instance, ``"auto"`` to join the running cluster, or
            ``host:port`` / ``ray://host:port``.
        num_workers: the CPUs of a private instance (how many tasks run at once).
        cpus_per_task: CPUs reserved by each task.
    """

    kind = "ray"

    def __init__(self, address: str | None = None, num_workers: int = 2, cpus_per_task: float = 1.0) -> None:
        import ray  # noqa: PLC0415 (ray is heavy: import it only when asked for)

        if num_workers < 1:
            raise ConfigError(f"num_workers must be >= 1, got {num_workers}", key="num_workers")
        self._ray = ray
        self.num_workers = num_workers
        self.cpus_per_task = cpus_per_task
        self._owns_instance = False
        if ray.is_initialized():
            log.info("using the Ray instance already initialised in this process")
        elif address is None:
            ray.init(num_cpus=num_workers, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
            self._owns_instance = True
        else:
            _probe(address)
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError, TimeoutError) as err:
                raise ConfigError(f"cannot join the Ray cluster ({str(err).splitlines()[0]})", key="address",
                                  allowed="auto, host:port, ray://host:port") from None
        self._apply = ray.remote(num_cpus=cpus_per_task, max_retries=0)(_apply)

    def submit(self, fn: Callable[..., R], *args: Any) -> Any:
        return self._apply.remote(fn, *args)

    def gather(self, handles: list[Any]) -> list[Any]:
        try:
            return self._ray.get(handles)
        except self._ray.exceptions.RayTaskError as err:  # re-raise the task's own exception when it has one
            cause = err.as_instanceof_cause()
            raise cause from None

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        return self.gather([self.submit(fn, item) for item in items])

    def share(self, obj: Any) -> Any:
        return self._ray.put(obj)

    def close(self) -> None:
        """Shut down the private instance (a joined cluster is left running)."""
        if self._owns_instance and self._ray.is_initialized():
            self._ray.shutdown()
            self._owns_instance = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _apply(fn: Callable[..., R], *args: Any) -> R:
    """``fn(*args)``: the one remote function, so that any picklable callable (builtins too) can be sent."""
    return fn(*args)


def _probe(address: str) -> None:
    """Refuse a ``host:port`` address that does not accept a TCP connection within a few seconds."""
    if address == "auto":
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"bad Ray address '{address}'", key="address", allowed="auto, host:port, ray://host:port")
    try:
        with socket.create_connection((host, int(port)), timeout=ADDRESS_TIMEOUT_S):
            pass
    except OSError as err:
        raise ConfigError(f"Ray address {address} does not answer ({err.strerror or type(err).__name__})",
                          key="address", allowed="auto, host:port, ray://host:port") from None


def executor_from_config(config: ExecutorConfig) -> LocalExecutor | RayExecutor:
    """The executor an :class:`ExecutorConfig` describes."""
    return make_executor(config.kind, config.address, config.num_workers)


def make_executor(kind: Literal["local", "ray"] = "local", address: str | None = None,
                  num_workers: int = 2) -> LocalExecutor | RayExecutor:
    """The executor ``kind``; ``address`` and ``num_workers`` only matter for Ray."""
    if kind == "local":
        return LocalExecutor()
    if kind == "ray":
        return RayExecutor(address=address, num_workers=num_workers)
    raise ConfigError(f"unknown executor '{kind}'", key="executor", allowed=EXECUTOR_KINDS)


__all__ = ["EXECUTOR_KINDS", "Executor", "ExecutorConfig", "LocalExecutor", "RayExecutor", "executor_from_config",
           "make_executor"]
