"""Run a function over a list of items, in this process (``local``) or on Ray workers (``ray``).

Both executors offer the same two calls::

    with make_executor("ray", num_workers=2) as executor:
        results = executor.map(score, archs)          # ordered like ``archs``
        handles = [executor.submit(score, a) for a in archs]
        results = executor.gather(handles)

Heavy work goes to long-lived workers instead: ``executor.pool(factory)`` builds ``factory()`` once per
worker (Ray: one actor per worker, placed with ``num_cpus``/``num_gpus``/``resources`` per actor; local: once,
in this process) and ``pool.map("method", items)`` hands the items to idle workers. A worker that dies (an
actor killed or its node lost) is replaced, and the item it was working on is redone once::

    pool = executor.pool(functools.partial(DistillWorker, config, out))   # teacher + supernet loaded once
    results = pool.map("run", groups)

Functions, factories and items sent to Ray must be picklable (module-level functions, plain data).
``address="auto"`` joins a running cluster; ``None`` starts a private local instance with ``num_workers``
CPUs. An address that does not answer is a one-line :class:`~tocsr_nas.errors.ConfigError`, raised before any
work starts.

A private instance registers its node at :data:`LOOPBACK_NODE_IP` on Linux, so it does not depend on the
machine's network (Ray replaces ``127.0.0.1`` as a node address by the machine's outward IP, but keeps the rest
of 127.0.0.0/8, all loopback on Linux); joining a cluster attaches this process to the local node as Ray finds it.
"""
from __future__ import annotations

import collections
import logging
import socket
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import Any, Literal, Protocol, TypeVar

import pydantic

from .errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

EXECUTOR_KINDS = ("local", "ray")
ADDRESS_TIMEOUT_S = 5.0
# a private instance's node address: Ray keeps any loopback address but 127.0.0.1 (see the module docstring);
# macOS and Windows configure only 127.0.0.1, and Ray uses it there anyway (they run no multi-node clusters)
LOOPBACK_NODE_IP = "127.0.0.2" if sys.platform.startswith("linux") else None


class ExecutorConfig(pydantic.BaseModel, extra="forbid"):
    """Where work runs: this process, or Ray workers (a private local instance, or a cluster to join)."""

    kind: Literal["local", "ray"] = "local"
    address: str | None = None  # ray: None starts a private local instance, "auto" joins a running cluster
    num_workers: int = pydantic.Field(2, gt=0)
    num_cpus: float = pydantic.Field(1.0, ge=0)  # ray: CPUs reserved by each worker (actor or task)
    num_gpus: float = pydantic.Field(0.0, ge=0)  # ray: GPUs reserved by each worker actor
    resources: dict[str, float] = {}  # ray: custom resources each worker actor needs (places it on nodes)


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

    def pool(self, factory: Callable[[], Any]) -> Pool:
        """Long-lived workers, each holding ``factory()``; see the module docstring."""
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

    def pool(self, factory: Callable[[], Any]) -> LocalPool:
        return LocalPool(factory)

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Pool(Protocol):
    """Workers that each hold one object built by a factory; ``map`` calls a method of it on each item."""

    redone: int  # items redone because their worker died

    def map(self, method: str, items: Sequence[Any]) -> list[Any]: ...

    def close(self) -> None:
        """Release the workers (Ray: kill the actors, also on a joined cluster)."""
        ...


class LocalPool:
    """The factory's object built once in this process; items run one after the other."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.worker = factory()
        self.redone = 0

    def map(self, method: str, items: Sequence[Any]) -> list[Any]:
        return [getattr(self.worker, method)(item) for item in items]

    def close(self) -> None:
        self.worker = None


class RayExecutor:
    """Runs each submitted call as a Ray task with ``cpus_per_task`` CPUs.

    Args:
        address: ``None`` for a private local instance, ``"auto"`` to join the running cluster, or
            ``host:port`` / ``ray://host:port``.
        num_workers: how many workers (pool actors; the CPUs of a private instance).
        cpus_per_task: CPUs reserved by each task and each pool actor.
        gpus_per_worker: GPUs reserved by each pool actor.
        resources: custom resources each pool actor needs.
    """

    kind = "ray"

    def __init__(self, address: str | None = None, num_workers: int = 2, cpus_per_task: float = 1.0,
                 gpus_per_worker: float = 0.0, resources: dict[str, float] | None = None) -> None:
        import ray  # noqa: PLC0415 (ray is heavy: import it only when asked for)

        if num_workers < 1:
            raise ConfigError(f"num_workers must be >= 1, got {num_workers}", key="num_workers")
        self._ray = ray
        self.num_workers = num_workers
        self.cpus_per_task, self.gpus_per_worker, self.resources = cpus_per_task, gpus_per_worker, resources or {}
        self._owns_instance = False
        if ray.is_initialized():
            log.info("using the Ray instance already initialised in this process")
        elif address is None:
            loopback = {"_node_ip_address": LOOPBACK_NODE_IP} if LOOPBACK_NODE_IP else {}
            ray.init(num_cpus=num_workers, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                     **loopback)
            self._owns_instance = True
        else:
            check_address(address)
            _token_auth_if_available()
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

    def pool(self, factory: Callable[[], Any]) -> RayPool:
        return RayPool(self._ray, factory, self.num_workers, num_cpus=self.cpus_per_task,
                       num_gpus=self.gpus_per_worker, resources=self.resources)

    def close(self) -> None:
        """Shut down the private instance (a joined cluster is left running)."""
        if self._owns_instance and self._ray.is_initialized():
            self._ray.shutdown()
            self._owns_instance = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Host:
    """A Ray actor's body: builds the factory's object once; a build error is raised by every call."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.error: Exception | None = None
        try:
            self.worker = factory()
        except Exception as err:  # noqa: BLE001 (delivered to the caller by call(), not as an actor death)
            self.error = err

    def call(self, method: str, item: Any) -> Any:
        if self.error is not None:
            raise self.error
        return getattr(self.worker, method)(item)

    def node(self) -> str:
        """The Ray node this actor runs on."""
        import ray  # noqa: PLC0415

        return ray.get_runtime_context().get_node_id()


class RayPool:
    """One Ray actor per worker, each holding ``factory()``; a dead actor is replaced and its item redone once.

    Attributes:
        actors: the live actor handles (a test may ``ray.kill`` one).
        busy: actor index -> index of the item it works on.
        redone: items redone because their actor died.
    """

    def __init__(self, ray: Any, factory: Callable[[], Any], size: int, *, num_cpus: float = 1.0,
                 num_gpus: float = 0.0, resources: dict[str, float] | None = None, retries: int = 1) -> None:
        self._ray, self._factory, self.retries = ray, factory, retries
        self._host = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, resources=resources or None,
                                max_restarts=0)(_Host)
        self.actors = [self._host.remote(factory) for _ in range(size)]
        self.busy: dict[int, int] = {}
        self.redone = 0

    def nodes(self) -> list[str]:
        """The node of each actor."""
        return self._ray.get([actor.node.remote() for actor in self.actors])

    def map(self, method: str, items: Sequence[Any]) -> list[Any]:
        ray = self._ray
        results: list[Any] = [None] * len(items)
        attempts = [0] * len(items)
        queue, idle = collections.deque(range(len(items))), collections.deque(range(len(self.actors)))
        running: dict[Any, tuple[int, int]] = {}
        while queue or running:
            while queue and idle:
                item, slot = queue.popleft(), idle.popleft()
                running[self.actors[slot].call.remote(method, items[item])] = (item, slot)
                self.busy[slot] = item
            (ref,), _ = ray.wait(list(running), num_returns=1)
            item, slot = running.pop(ref)
            self.busy.pop(slot, None)
            try:
                results[item] = ray.get(ref)
            except ray.exceptions.RayActorError as err:
                attempts[item] += 1
                if attempts[item] > self.retries:
                    raise RuntimeError(f"item {item} lost its worker {attempts[item]} times: {err}") from None
                log.warning("a worker died working on item %d: replacing it and redoing the item", item)
                self.redone += 1
                self.actors[slot] = self._host.remote(self._factory)
                queue.appendleft(item)
            except ray.exceptions.RayTaskError as err:
                raise err.as_instanceof_cause() from None
            idle.append(slot)
        return results

    def close(self) -> None:
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors = []


def _apply(fn: Callable[..., R], *args: Any) -> R:
    """``fn(*args)``: the one remote function, so that any picklable callable (builtins too) can be sent."""
    return fn(*args)


def _token_auth_if_available() -> None:
    """Send the cluster's auth token when one is saved (``~/.ray/auth_token``), as ``ray`` CLI commands do."""
    try:
        from ray._private.authentication.authentication_token_setup import (  # noqa: PLC0415
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token authentication
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def check_address(address: str | None) -> None:
    """Refuse a ``host:port`` Ray address that does not accept a TCP connection within a few seconds (``None``, a
    private instance, and ``auto`` pass: nothing to ask). Starts nothing: a cheap check before anything is written."""
    if address is None or address == "auto":
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
    if config.kind == "local":
        return LocalExecutor()
    return RayExecutor(address=config.address, num_workers=config.num_workers, cpus_per_task=config.num_cpus,
                       gpus_per_worker=config.num_gpus, resources=config.resources)


def make_executor(kind: Literal["local", "ray"] = "local", address: str | None = None,
                  num_workers: int = 2) -> LocalExecutor | RayExecutor:
    """The executor ``kind``; ``address`` and ``num_workers`` only matter for Ray."""
    if kind == "local":
        return LocalExecutor()
    if kind == "ray":
        return RayExecutor(address=address, num_workers=num_workers)
    raise ConfigError(f"unknown executor '{kind}'", key="executor", allowed=EXECUTOR_KINDS)


__all__ = ["EXECUTOR_KINDS", "Executor", "ExecutorConfig", "LocalExecutor", "LocalPool", "Pool", "RayExecutor",
           "RayPool", "check_address", "executor_from_config", "make_executor"]
