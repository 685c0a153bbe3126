"""One registry mechanism for every kind of plug-in: ops, strategies, evaluators, degradations.

A :class:`Registry` maps names to entries (an op spec, a strategy class, an evaluator factory, ...). Entries come
from four places, all recorded with their *origin* so errors can name it:

* built-ins, imported lazily on the first lookup (``builtins``); an optional built-in whose package is missing
  (``OptionalBuiltin``) is listed as unavailable with the pip extra that installs it;
* a decorator in the user's own code (``@register_op``, ``@register_strategy``, ...);
* installed packages, through the kind's entry-point group (``tocsr_nas.ops``, ``tocsr_nas.strategies``,
  ``tocsr_nas.evaluators``, ``tocsr_nas.degradations``): the entry point names a module whose import registers
  its entries, or the registered object itself;
* local plug-in files or modules named explicitly (``plugins:`` in a YAML, ``--plugins``; see
  :mod:`tocsr_nas.plugins`).

Adding a kind or a built-in::

    STRATEGIES = Registry("strategy", group="tocsr_nas.strategies", key="strategy",
                          builtins=["strategies.random_search"],
                          optional=[OptionalBuiltin("strategies.bo", ("bo",), ("botorch",), extra="bo")])
    STRATEGIES.register("mine", MyStrategy)          # or: @STRATEGIES.decorator("mine")
    STRATEGIES.get("mine")                            # unknown -> ConfigError listing the allowed names
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")

_LOADING: list[str] = []  # origins of the plug-ins being loaded right now (innermost last)


@contextlib.contextmanager
def loading_from(origin: str) -> Iterator[None]:
    """Attribute every registration made inside the block to ``origin`` (a plug-in or an entry point)."""
    _LOADING.append(origin)
    try:
        yield
    finally:
        _LOADING.pop()


def current_plugin() -> str | None:
    """The origin of the plug-in being loaded right now, if any."""
    return _LOADING[-1] if _LOADING else None


@dataclasses.dataclass(frozen=True)
class OptionalBuiltin:
    """A built-in module that needs optional packages: ``names`` it registers, the packages, the pip extra."""

    module: str
    names: tuple[str, ...]
    requires: tuple[str, ...]
    extra: str


class Registry(Generic[T]):
    """Name -> entry for one kind of plug-in, with origins, lazy built-ins and an entry-point group.

    Args:
        kind: the word used in errors (``"op"``, ``"strategy"``, ...).
        group: the entry-point group installed packages register under.
        key: the config key an unknown name is reported at (``"strategy"``, ``"evaluators"``, ...).
        builtins: modules whose import registers the built-in entries (imported on the first lookup).
        optional: built-in modules needing optional packages; when missing, their names are unavailable.
    """

    def __init__(self, kind: str, *, group: str, key: str, builtins: list[str] | tuple[str, ...] = (),
                 optional: list[OptionalBuiltin] | tuple[OptionalBuiltin, ...] = ()) -> None:
        self.kind, self.group, self.key = kind, group, key
        self._builtins, self._optional = tuple(builtins), tuple(optional)
        self._entries: dict[str, T] = {}
        self._origins: dict[str, str] = {}
        self._unavailable: dict[str, str] = {}
        self._loaded = False

    # -- registering -------------------------------------------------------------------------------------------
    def register(self, name: str, entry: T, *, origin: str | None = None) -> T:
        """Register ``entry`` as ``name``; a second, different entry under the same name is a ConfigError."""
        origin = origin or current_plugin() or _describe(entry)
        if name in self._entries and self._entries[name] is not entry:
            raise ConfigError(f"{self.kind} '{name}' is already registered by {self._origins[name]} "
                              f"(registered again by {origin})")
        self._entries[name] = entry
        self._origins[name] = origin
        self._unavailable.pop(name, None)
        return entry

    def decorator(self, name: str, wrap: Callable[[Any], T] | None = None) -> Callable[[Any], Any]:
        """A decorator registering its target as ``name`` (``wrap`` turns the target into the entry)."""

        def decorate(target: Any) -> Any:
            self.register(name, wrap(target) if wrap else target, origin=current_plugin() or _describe(target))
            return target

        return decorate

    def mark_unavailable(self, name: str, reason: str) -> None:
        """Record that ``name`` exists but cannot be used here, and why (e.g. a missing optional package)."""
        if name not in self._entries:
            self._unavailable[name] = reason

    # -- looking up --------------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """The usable names, sorted."""
        self._load()
        return sorted(self._entries)

    def unavailable(self) -> dict[str, str]:
        """Names that exist but cannot be used here -> why."""
        self._load()
        return dict(self._unavailable)

    def entries(self) -> dict[str, T]:
        """All usable entries by name."""
        self._load()
        return dict(self._entries)

    def origin(self, name: str) -> str:
        """Where ``name`` was registered from: a module path, ``plugin <path>`` or ``entry point <name>``."""
        self._load()
        return self._origins[name]

    def get(self, name: str, *, source: Any = None, key: str | None = None) -> T:
        """The entry registered as ``name``; unknown or unavailable names are a one-line ConfigError."""
        self._load()
        if name in self._entries:
            return self._entries[name]
        key = key or self.key
        if name in self._unavailable:
            raise ConfigError(f"{self.kind} '{name}' is unavailable: {self._unavailable[name]}", source=source,
                              key=key, allowed=self.names())
        raise ConfigError(f"unknown {self.kind} '{name}'", source=source, key=key, allowed=self.names())

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    @contextlib.contextmanager
    def scoped(self) -> Iterator[Registry[T]]:
        """Undo every registration made inside the block (for tests)."""
        self._load()
        saved = dict(self._entries), dict(self._origins), dict(self._unavailable)
        try:
            yield self
        finally:
            self._entries, self._origins, self._unavailable = saved

    # -- loading -----------------------------------------------------------------------------------------------
    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self._builtins:
            importlib.import_module(module)
        for optional in self._optional:
            missing = next((p for p in optional.requires if importlib.util.find_spec(p) is None), None)
            if missing is None:
                importlib.import_module(optional.module)
                continue
            for name in optional.names:
                self.mark_unavailable(name, f"needs the package '{missing}' (pip install 'tocsr-nas[{optional.extra}]')")
        for entry_point in entry_points(group=self.group):
            with loading_from(f"entry point '{entry_point.name}' ({entry_point.value})"):
                entry_point.load()


def _describe(entry: Any) -> str:
    """``module.qualname`` of a registered object (its origin when no plug-in is loading)."""
    target = getattr(entry, "builder", entry)
    module = getattr(target, "__module__", None) or type(target).__module__
    return f"{module}.{getattr(target, '__qualname__', type(target).__qualname__)}"
