"""One module per source dataset; each registers its class with :func:`nucfuse_datasets.datasets._registry.register`.

Modules here are imported on demand by :func:`nucfuse_datasets.list_datasets`; adding a dataset means
adding a module (no other file needs editing). Classes are reachable as attributes of this package
and of :mod:`nucfuse_datasets` (``nucfuse_datasets.MoNuSeg``).
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    from nucfuse_datasets.datasets._registry import registered

    for cls in registered().values():
        if cls.__name__ == name:
            return cls
    raise AttributeError(f"module 'nucfuse_datasets.datasets' has no attribute {name!r}")
