"""Run configuration for the training and evaluation entry points: TOML or JSON files, dotted overrides.

A configuration is a nested dict with the sections ``recipe`` (fields of the recipe dataclass, e.g.
:class:`examples.hovernext.recipe.HoVerNeXtRecipe`), ``model``, ``data``, ``train`` and ``eval``; see
``examples/hovernext/config.toml`` for every key with its meaning. Precedence: the built-in defaults (the
authors' constants) < the ``--config`` file < command-line overrides.

TOML files are read with :mod:`tomllib` (Python ≥ 3.11) or, on Python 3.10, with the ``tomli`` package when it is
installed; otherwise use a JSON file with the same structure (``--print-config`` writes one) or no file at all.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from nucfuse_datasets.errors import ArgumentError, DependencyNotFoundError

__all__ = [
    "SECTIONS",
    "apply_overrides",
    "load_config",
    "merge",
    "parse_value",
    "recipe_from_config",
    "recipe_to_config",
    "set_dotted",
]

#: Top-level sections of a run configuration.
SECTIONS = ("recipe", "model", "data", "train", "eval")

R = TypeVar("R")


def _toml_loads(text: str, path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        try:
            import tomli as tomllib
        except ImportError:
            raise DependencyNotFoundError(
                f"{path}: reading TOML needs Python >= 3.11 or the `tomli` package; install tomli, or pass a JSON "
                "config with the same sections (write one with --print-config on a machine that can read TOML), "
                "or run without --config (the defaults are the authors' constants)"
            ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ArgumentError(f"{path}: invalid TOML ({exc})") from None


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a ``.toml`` or ``.json`` configuration file into a nested dict.

    Raises:
        ArgumentError: the file is missing, has another suffix, cannot be parsed or has unknown sections.
        DependencyNotFoundError: a TOML file on Python 3.10 without ``tomli``.
    """
    p = Path(path)
    if not p.is_file():
        raise ArgumentError(f"config file {str(p)!r} not found")
    text = p.read_text(encoding="utf-8")
    suffix = p.suffix.lower()
    if suffix == ".toml":
        data = _toml_loads(text, p)
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArgumentError(f"{p}: invalid JSON ({exc})") from None
    else:
        raise ArgumentError(f"{p}: config files must end in .toml or .json")
    if not isinstance(data, dict):
        raise ArgumentError(f"{p}: the top level must be a table/object")
    unknown = set(data) - set(SECTIONS)
    if unknown:
        raise ArgumentError(f"{p}: unknown config sections {sorted(unknown)}; valid: {list(SECTIONS)}")
    return data


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into a copy of ``base`` (tables merge, everything else is replaced)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_value(text: str) -> Any:
    """A command-line value: JSON when it parses (numbers, booleans, lists, objects, null), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def set_dotted(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``cfg["a"]["b"]["c"] = value`` for ``dotted = "a.b.c"``, creating tables on the way."""
    keys = [k for k in dotted.split(".") if k]
    if not keys:
        raise ArgumentError(f"empty config key {dotted!r}")
    node = cfg
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def apply_overrides(cfg: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` assignments (values parsed with :func:`parse_value`) to a copy of ``cfg``."""
    out = copy.deepcopy(cfg)
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ArgumentError(f"override {item!r} must look like section.key=value")
        if key.split(".", 1)[0] not in SECTIONS:
            raise ArgumentError(f"override {item!r}: the first part must be one of {list(SECTIONS)}")
        set_dotted(out, key.strip(), parse_value(raw.strip()))
    return out


def _coerce(value: Any, default: Any) -> Any:
    if isinstance(default, tuple) and isinstance(value, list | tuple):
        return tuple(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def recipe_from_config(default: R, section: Mapping[str, Any] | None) -> R:
    """The recipe dataclass ``default`` with the fields in ``section`` replaced (lists become tuples).

    Raises:
        ArgumentError: ``section`` names a field the recipe does not have.
    """
    section = dict(section or {})
    fields = {f.name for f in dataclasses.fields(default)}  # type: ignore[arg-type]
    unknown = set(section) - fields
    if unknown:
        raise ArgumentError(f"unknown recipe keys {sorted(unknown)}; valid: {sorted(fields)}")
    values = {k: _coerce(v, getattr(default, k)) for k, v in section.items()}
    return dataclasses.replace(default, **values)  # type: ignore[type-var]


def recipe_to_config(recipe: Any) -> dict[str, Any]:
    """A recipe dataclass as a config section (tuples become lists, as TOML/JSON store them)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(recipe).items()}
