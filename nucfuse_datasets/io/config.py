"""Where data lives and whether the network may be used."""

from __future__ import annotations

import os
from pathlib import Path

import pooch

__all__ = ["DATA_DIR_ENV", "OFFLINE_ENV", "PathLike", "is_offline", "resolve_root"]

DATA_DIR_ENV = "NUCFUSE_DATA_DIR"
OFFLINE_ENV = "NUCFUSE_OFFLINE"

PathLike = str | os.PathLike[str]


def resolve_root(root: PathLike | None = None) -> Path:
    """Resolve the data root: the argument, else ``$NUCFUSE_DATA_DIR``, else ``pooch.os_cache("nucfuse")``.

    ``~`` is expanded. The folder is not created here.

    Example:
        >>> resolve_root("~/data").name
        'data'
    """
    if root is None:
        env = os.environ.get(DATA_DIR_ENV)
        root = env if env else pooch.os_cache("nucfuse")
    return Path(root).expanduser()


def is_offline() -> bool:
    """True when ``NUCFUSE_OFFLINE`` is set to a true value (``1``, ``true``, ``yes``)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}
