"""The registry of dataset classes: filled by ``@register`` in each dataset module, loaded by importing them.

It lives inside ``nucfuse_datasets.datasets`` so that imports run one way: the dataset modules import this module,
this module imports the dataset modules (on first use), and the public functions of
:mod:`nucfuse_datasets._registry` (``list_datasets``, ``get_dataset`` ...) read it without being imported by any
dataset module.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, TypeVar

from nucfuse_datasets.errors import ArgumentError

if TYPE_CHECKING:  # pragma: no cover
    from nucfuse_datasets.datasets._base import NucleiDataset

__all__ = ["load_all", "register", "registered"]

_REGISTRY: dict[str, type[NucleiDataset]] = {}
_LOADED = False
T = TypeVar("T", bound="type[NucleiDataset]")


def register(cls: T) -> T:
    """Class decorator that registers a dataset under its ``name`` attribute.

    Raises:
        ArgumentError: another class is registered under the same name.
    """
    name = cls.name
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ArgumentError(f"dataset name {name!r} registered twice ({_REGISTRY[name]!r} and {cls!r})")
    _REGISTRY[name] = cls
    return cls


def load_all() -> None:
    """Import every public module of :mod:`nucfuse_datasets.datasets` once (each registers its class)."""
    global _LOADED
    if _LOADED:
        return
    package = importlib.import_module("nucfuse_datasets.datasets")
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")
    _LOADED = True


def registered() -> dict[str, type[NucleiDataset]]:
    """Name -> class of every registered dataset (all dataset modules loaded first)."""
    load_all()
    return _REGISTRY
