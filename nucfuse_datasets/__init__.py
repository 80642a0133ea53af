"""nucfuse_datasets: the NucFuseRank nuclei instance-segmentation benchmark in three lines.

Example:
    >>> import nucfuse_datasets as nf
    >>> "monuseg" in nf.list_datasets()
    True

The heavier entry points (``NucFuseTrain``, ``NucFuseTest``, ``metrics``) are imported lazily.

Layout, in the order data flows: :mod:`~nucfuse_datasets.io` (bytes in: downloads, archives, safe readers, the
prepared store) → :mod:`~nucfuse_datasets.datasets` (one module per source dataset, the registry) →
:mod:`~nucfuse_datasets.transforms` (stain, targets, adapters, post-processing) → :mod:`~nucfuse_datasets.metrics`
(scoring one image, class-agnostic and class-aware) → :mod:`~nucfuse_datasets.benchmark` (NucFuse-test/train,
evaluation, the paper's analyses) → :mod:`~nucfuse_datasets.export` (Hugging Face, WebDataset), with
:mod:`~nucfuse_datasets.cli` (the ``nucfuse`` command) over them. ``errors``, ``schema`` and ``_labelmap`` are the
vocabulary every stage shares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nucfuse_datasets import errors
from nucfuse_datasets._version import __version__
from nucfuse_datasets.datasets._registry import get_dataset, get_dataset_class, list_datasets
from nucfuse_datasets.schema import Sample, SampleMeta, collate

if TYPE_CHECKING:  # pragma: no cover
    from nucfuse_datasets.benchmark.composite import NucFuseTest, NucFuseTrain
    from nucfuse_datasets.benchmark.evaluation import evaluate

__all__ = [
    "NucFuseTest",
    "NucFuseTrain",
    "Sample",
    "SampleMeta",
    "__version__",
    "collate",
    "errors",
    "evaluate",
    "get_dataset",
    "get_dataset_class",
    "list_datasets",
]

_LAZY = {
    "NucFuseTrain": "nucfuse_datasets.benchmark.composite",
    "NucFuseTest": "nucfuse_datasets.benchmark.composite",
    "evaluate": "nucfuse_datasets.benchmark.evaluation",
}
#: ``nucfuse_datasets.<name>`` -> the module it is (imported on first use)
_SUBMODULES = (
    {name: f"nucfuse_datasets.{name}" for name in ("metrics", "baselines", "export", "transforms")}
    | {
        name: f"nucfuse_datasets.benchmark.{name}"
        for name in ("evaluation", "analysis", "paper", "leakage", "protocol")
    }
    | {name: f"nucfuse_datasets.transforms.{name}" for name in ("targets", "postprocess", "stain")}
    | {"figures": "nucfuse_datasets.benchmark.analysis.figures", "benchmark": "nucfuse_datasets.benchmark"}
)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(_SUBMODULES[name])
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    from nucfuse_datasets.datasets._registry import dataset_classes

    for cls in dataset_classes():
        if cls.__name__ == name:
            return cls
    raise AttributeError(f"module 'nucfuse_datasets' has no attribute {name!r}")
