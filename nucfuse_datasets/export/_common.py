"""What both export formats share: PNG/npy encoding, staging folders, the metadata columns."""

from __future__ import annotations

import io
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from nucfuse_datasets.errors import ArgumentError, DependencyNotFoundError
from nucfuse_datasets.io.config import PathLike
from nucfuse_datasets.schema import Sample

__all__ = ["INDEX", "SHARD_PATTERN"]

_META_COLUMNS = ("dataset", "sample_id", "split", "organ", "magnification", "mpp", "original_file")
SHARD_PATTERN = "shard-%06d.tar"
INDEX = "index.json"


def _need(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DependencyNotFoundError(f"this export needs {module}: pip install 'nucfuse-datasets[export]'") from None


def _samples(dataset: Any) -> Iterator[Sample]:
    """Untransformed Samples of a dataset, NucFuse-train or NucFuse-test (``load_sample`` when it has one)."""
    load = getattr(dataset, "load_sample", None) or dataset.__getitem__
    for i in range(len(dataset)):
        sample = load(i)
        if not isinstance(sample, Sample):
            raise ArgumentError(
                f"{type(dataset).__name__}[{i}] is a {type(sample).__name__}, not a Sample; export the dataset "
                "without a transform that changes the sample type"
            )
        yield sample


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image), mode="RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _unpng(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _unnpy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


class _Staging:
    """Write into ``.tmp-<name>-<uuid>`` beside ``target``, then rename into place (or remove on failure)."""

    def __init__(self, target: PathLike, overwrite: bool) -> None:
        self.target = Path(target).expanduser()
        if self.target.exists() and not overwrite:
            raise ArgumentError(f"{self.target} already exists; choose another path or pass overwrite=True")
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.target.parent / f".tmp-{self.target.name}-{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> Path:
        self.tmp.mkdir()
        return self.tmp

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        old = None
        if self.target.exists():
            old = self.target.parent / f".tmp-old-{self.target.name}-{uuid.uuid4().hex[:8]}"
            os.replace(self.target, old)
        os.replace(self.tmp, self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
