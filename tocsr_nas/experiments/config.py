"""Experiment YAMLs: ``base:`` inheritance, ``key=value`` overrides, and ``sweep:`` grids.

An experiment file is a mapping. ``base: other.yaml`` (relative to the file) is loaded first and the file's keys are
merged over it recursively. Overrides use dotted keys (``search.budget=20``) with YAML values and may only name keys
that exist in the resolved config (defaults included); a typo lists the close matches. ``sweep:`` maps dotted keys
to lists of values and expands into the cartesian grid of runs. ``plugins:`` files are relative to the file naming them; a ``base:``
chain's lists are joined.
"""
from __future__ import annotations

import copy
import difflib
import itertools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from ..config_io import read_mapping
from ..errors import ConfigError
from ..plugins import plugin_ref


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: mappings merge, everything else in ``update`` replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_experiment(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read an experiment YAML with its ``base:`` chain resolved."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError("circular base: chain", source=path, key="base")
    data = read_mapping(path)
    if isinstance(data.get("plugins"), list):  # plug-in files are relative to the file naming them
        data["plugins"] = [plugin_ref(p, path.parent) if isinstance(p, str) else p for p in data["plugins"]]
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError("base must be a file name", source=path, key="base")
    inherited = load_experiment(path.parent / base, (*_seen, path))
    merged = merge(inherited, data)
    if isinstance(inherited.get("plugins"), list) and isinstance(data.get("plugins"), list):
        merged["plugins"] = list(dict.fromkeys([*inherited["plugins"], *data["plugins"]]))
    return merged


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists are leaves)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def set_dotted(data: dict[str, Any], dotted: str, value: Any, *, known: set[str], source: str) -> None:
    """Set ``a.b.c`` in ``data``; refuse keys not in ``known`` (listing the close matches)."""
    prefixes = {k.rsplit(".", i)[0] for k in known for i in range(k.count(".") + 1)}
    if dotted not in known and dotted not in prefixes:
        close = difflib.get_close_matches(dotted, sorted(known), n=4, cutoff=0.5)
        raise ConfigError(f"unknown key '{dotted}'", source=source, key=dotted,
                          allowed=f"did you mean {', '.join(close)}?" if close else "see the experiment's keys")
    node = data
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    """``["search.budget=20", "eps=[0.1, 0.2]"]`` -> ``[("search.budget", 20), ("eps", [0.1, 0.2])]``."""
    pairs = []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override '{item}' is not key=value", source="command line")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"cannot parse the value of '{item}'", source="command line", key=key) from None
        pairs.append((key.strip(), value))
    return pairs


def expand_sweep(sweep: Mapping[str, list[Any]], source: str) -> Iterator[dict[str, Any]]:
    """The cartesian grid of a ``sweep:`` mapping, as dicts of dotted key -> value."""
    for key, values in sweep.items():
        if not isinstance(values, list) or not values:
            raise ConfigError("a sweep entry needs a non-empty list of values", source=source, key=f"sweep.{key}")
    keys = list(sweep)
    for combo in itertools.product(*(sweep[k] for k in keys)):
        yield dict(zip(keys, combo))


def run_suffix(point: Mapping[str, Any]) -> str:
    """A folder-name suffix for one sweep point, e.g. ``search.strategy=bo,seed=1``."""
    return ",".join(f"{k}={v}" for k, v in point.items()).replace("/", "_").replace(" ", "")
