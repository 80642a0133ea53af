"""Optional-dependency guard for the recipes (timm lives in the ``train`` extra)."""

from __future__ import annotations

from types import ModuleType

from nucfuse_datasets.errors import DependencyNotFoundError

__all__ = ["require_timm"]


def require_timm() -> ModuleType:
    """Import timm or raise :class:`DependencyNotFoundError` naming the pip extra."""
    try:
        import timm
    except ImportError as exc:  # pragma: no cover - exercised only without timm
        raise DependencyNotFoundError(
            "the reference recipes need timm (and torchvision); install them with "
            "`pip install 'nucfuse-datasets[train]'`"
        ) from exc
    return timm
