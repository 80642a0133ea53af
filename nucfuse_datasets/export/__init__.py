"""Export any dataset, NucFuse-train or NucFuse-test as a Hugging Face ``datasets`` dataset or WebDataset shards.

For training at scale (many nodes reading from object storage) the per-tile files of a prepared store are
inconvenient; these exports write the same Samples into formats the ecosystem streams, and read them back as
Samples, exactly (lossless PNG for the image, raw integer arrays for the maps).

* **Hugging Face** (:func:`export_hf`, :func:`load_hf`): an Arrow dataset saved with ``save_to_disk``
  (``datasets.load_from_disk`` works). Columns: ``image`` (``Image``, PNG), ``instances`` (``int32``
  ``List(List)``), ``classes`` (``int32`` list or null), ``class_names`` (strings or null), ``ignore`` (``bool``
  ``List(List)`` or null) and the meta columns ``dataset``, ``sample_id``, ``split``, ``organ``,
  ``magnification``, ``mpp``, ``original_file``, ``extra`` (a JSON string).
* **WebDataset** (:func:`export_webdataset`, :func:`read_webdataset`): tar shards ``shard-000000.tar``... of at
  most ``shard_size`` samples; each sample is ``<key>.png``, ``<key>.instances.npy``, optional
  ``<key>.classes.npy`` and ``<key>.ignore.npy``, and ``<key>.meta.json`` (meta plus ``class_names``);
  ``index.json`` lists the shards and their sample counts.

Both writers read untransformed Samples (``load_sample``), write into a temporary folder beside the target and
rename it into place, so an interrupted export leaves nothing half-written. Needs the ``export`` extra.

Example:
    >>> import nucfuse_datasets as nf
    >>> tmp = getfixture("tmp_path")
    >>> ds = nf.get_dataset("synthetic", root=tmp / "data", n_tiles=3, tile_size=32)
    >>> folder = export_webdataset(ds, tmp / "wds", shard_size=2)
    >>> [p.name for p in sorted(folder.glob("*.tar"))]
    ['shard-000000.tar', 'shard-000001.tar']
    >>> [s.meta.sample_id for s in read_webdataset(folder)] == ds.sample_ids
    True
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from nucfuse_datasets.errors import ArgumentError, InvalidSampleError
from nucfuse_datasets.export._common import (
    _META_COLUMNS,
    INDEX,
    SHARD_PATTERN,
    _need,
    _npy,
    _png,
    _samples,
    _Staging,
    _unnpy,
    _unpng,
)
from nucfuse_datasets.io.config import PathLike
from nucfuse_datasets.schema import Sample, SampleMeta

__all__ = [
    "HFSamples",
    "export_hf",
    "export_webdataset",
    "load_hf",
    "read_webdataset",
    "sample_from_hf_row",
    "sample_from_wds",
    "shard_urls",
]


# ---------------------------------------------------------------------------------------------- Hugging Face
def _hf_features() -> Any:
    ds = _need("datasets")
    return ds.Features(
        {
            "image": ds.Image(),
            "instances": ds.List(ds.List(ds.Value("int32"))),
            "classes": ds.List(ds.Value("int32")),
            "class_names": ds.List(ds.Value("string")),
            "ignore": ds.List(ds.List(ds.Value("bool"))),
            **{c: ds.Value("float64" if c in ("magnification", "mpp") else "string") for c in _META_COLUMNS},
            "extra": ds.Value("string"),
        }
    )


def _hf_row(sample: Sample) -> dict[str, Any]:
    meta = sample.meta.model_dump()
    return {
        "image": {"bytes": _png(sample.image), "path": None},
        "instances": sample.instances,
        "classes": sample.classes,
        "class_names": None if sample.class_names is None else list(sample.class_names),
        "ignore": sample.ignore,
        **{c: meta[c] for c in _META_COLUMNS},
        "extra": json.dumps(meta["extra"], sort_keys=True),
    }


def _hf_generator(dataset: Any) -> Iterator[dict[str, Any]]:
    for sample in _samples(dataset):
        yield _hf_row(sample)


def export_hf(dataset: Any, path: PathLike, *, overwrite: bool = False) -> Path:
    """Write every Sample of ``dataset`` as a Hugging Face dataset saved with ``save_to_disk``.

    Args:
        dataset: a registered dataset, ``NucFuseTrain`` or ``NucFuseTest`` (its untransformed Samples are written).
        path: target folder (created; must not exist unless ``overwrite``).
        overwrite: replace an existing export.

    Returns:
        The folder, ready for ``datasets.load_from_disk`` or :func:`load_hf`.

    Raises:
        ArgumentError: ``path`` exists and ``overwrite`` is False.
        DependencyNotFoundError: ``datasets`` is not installed (the ``export`` extra).

    Example:
        >>> import nucfuse_datasets as nf
        >>> tmp = getfixture("tmp_path")
        >>> ds = nf.get_dataset("synthetic", root=tmp / "data", n_tiles=2, tile_size=32)
        >>> out = export_hf(ds, tmp / "hf")
        >>> import datasets
        >>> datasets.load_from_disk(str(out)).column_names[:3]
        ['image', 'instances', 'classes']
    """
    hf = _need("datasets")
    with _Staging(path, overwrite) as tmp:
        try:
            built = hf.Dataset.from_generator(
                _hf_generator,
                features=_hf_features(),
                gen_kwargs={"dataset": dataset},
                cache_dir=str(tmp / "cache"),
                keep_in_memory=False,
            )
        except hf.exceptions.DatasetGenerationError as exc:  # surface the reader's own error (file, sample)
            raise (exc.__cause__ or exc) from None
        built.save_to_disk(str(tmp / "data"))
        del built
        shutil.rmtree(tmp / "cache", ignore_errors=True)
        for p in (tmp / "data").iterdir():
            os.replace(p, tmp / p.name)
        (tmp / "data").rmdir()
    return Path(path).expanduser()


def sample_from_hf_row(row: dict[str, Any]) -> Sample:
    """Turn one row of an exported Hugging Face dataset (Python or numpy format) back into a Sample.

    Raises:
        InvalidSampleError: the row does not hold a valid Sample.
    """
    image = row["image"]
    if isinstance(image, dict):  # undecoded {"bytes", "path"}
        image = _unpng(image["bytes"])
    image = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, dtype=np.uint8)
    classes = row.get("classes")
    names = row.get("class_names")
    ignore = row.get("ignore")
    meta: dict[str, Any] = {c: row.get(c) for c in _META_COLUMNS}
    meta["extra"] = json.loads(row.get("extra") or "{}")
    return Sample(
        image=image,
        instances=np.asarray(row["instances"], dtype=np.int32).reshape(image.shape[:2]),
        classes=None if classes is None else np.asarray(classes, dtype=np.int32),
        class_names=None if names is None else tuple(str(n) for n in names),
        ignore=None if ignore is None else np.asarray(ignore, dtype=bool).reshape(image.shape[:2]),
        meta=SampleMeta(**meta),
    )


class HFSamples:
    """A map-style dataset of Samples read from an export made by :func:`export_hf` (see :func:`load_hf`).

    Args:
        path: the exported folder.
        transforms: applied to each Sample (torchvision v2 / albumentations transforms are wrapped).
    """

    def __init__(self, path: PathLike, transforms: Any = None) -> None:
        from nucfuse_datasets.transforms.adapters import as_sample_transform

        hf = _need("datasets")
        self.path = Path(path).expanduser()
        self.data = hf.load_from_disk(str(self.path)).with_format("numpy")
        self.transforms = as_sample_transform(transforms)

    def __len__(self) -> int:
        return len(self.data)

    def load_sample(self, idx: int) -> Sample:
        """The untransformed Sample ``idx``."""
        return sample_from_hf_row(self.data[int(idx)])

    def __getitem__(self, idx: int) -> Any:
        sample = self.load_sample(idx)
        return self.transforms(sample) if self.transforms is not None else sample

    def __repr__(self) -> str:
        return f"HFSamples({str(self.path)!r}, n={len(self)})"


def load_hf(path: PathLike, transforms: Any = None) -> HFSamples:
    """Open an export made by :func:`export_hf` as a map-style dataset of Samples.

    Example:
        >>> import nucfuse_datasets as nf
        >>> tmp = getfixture("tmp_path")
        >>> ds = nf.get_dataset("synthetic", root=tmp / "data", n_tiles=2, tile_size=32)
        >>> back = load_hf(export_hf(ds, tmp / "hf"))
        >>> (back[1].instances == ds[1].instances).all()
        np.True_
    """
    return HFSamples(path, transforms)


# ---------------------------------------------------------------------------------------------- WebDataset
def _wds_record(key: str, sample: Sample) -> dict[str, Any]:
    meta = sample.meta.model_dump()
    meta["class_names"] = None if sample.class_names is None else list(sample.class_names)
    rec: dict[str, Any] = {
        "__key__": key,
        "png": _png(sample.image),
        "instances.npy": _npy(sample.instances),
        "meta.json": json.dumps(meta, sort_keys=True).encode(),
    }
    if sample.classes is not None:
        rec["classes.npy"] = _npy(sample.classes)
    if sample.ignore is not None:
        rec["ignore.npy"] = _npy(sample.ignore)
    return rec


def export_webdataset(dataset: Any, folder: PathLike, *, shard_size: int = 1000, overwrite: bool = False) -> Path:
    """Write every Sample of ``dataset`` as WebDataset tar shards of at most ``shard_size`` samples.

    Args:
        dataset: a registered dataset, ``NucFuseTrain`` or ``NucFuseTest`` (its untransformed Samples are written).
        folder: target folder for ``shard-000000.tar``... and ``index.json`` (must not exist unless ``overwrite``).
        shard_size: samples per shard; with several nodes × workers, make at least that many shards.
        overwrite: replace an existing export.

    Returns:
        The folder.

    Raises:
        ArgumentError: ``shard_size < 1`` or ``folder`` exists and ``overwrite`` is False.
        DependencyNotFoundError: ``webdataset`` is not installed (the ``export`` extra).
    """
    wds = _need("webdataset")
    if int(shard_size) < 1:
        raise ArgumentError(f"shard_size must be >= 1, got {shard_size}")
    with _Staging(folder, overwrite) as tmp:
        counts: list[int] = []
        with wds.ShardWriter(str(tmp / SHARD_PATTERN), maxcount=int(shard_size), verbose=0, encoder=False) as sink:
            for i, sample in enumerate(_samples(dataset)):
                if i % int(shard_size) == 0:
                    counts.append(0)
                sink.write(_wds_record(f"{i:09d}", sample))
                counts[-1] += 1
        index = {
            "format": "nucfuse-webdataset",
            "version": 1,
            "n_samples": sum(counts),
            "shards": [{"file": SHARD_PATTERN % k, "n_samples": n} for k, n in enumerate(counts)],
        }
        (tmp / INDEX).write_text(json.dumps(index, indent=1) + "\n")
    return Path(folder).expanduser()


def sample_from_wds(item: dict[str, Any]) -> Sample:
    """Turn one raw WebDataset sample (bytes per extension) back into a Sample.

    Raises:
        InvalidSampleError: a member is missing; the message names the sample key and its shard.
    """
    where = f"{item.get('__url__', '?')}: sample {item.get('__key__', '?')}"
    missing = [k for k in ("png", "instances.npy", "meta.json") if k not in item]
    if missing:
        raise InvalidSampleError(f"{where} lacks {', '.join(missing)}; was it written by export_webdataset?")
    meta = json.loads(item["meta.json"])
    names = meta.pop("class_names", None)
    return Sample(
        image=_unpng(item["png"]),
        instances=_unnpy(item["instances.npy"]),
        classes=_unnpy(item["classes.npy"]) if "classes.npy" in item else None,
        class_names=None if names is None else tuple(names),
        ignore=_unnpy(item["ignore.npy"]) if "ignore.npy" in item else None,
        meta=SampleMeta(**meta),
    )


def shard_urls(source: PathLike | Iterable[str]) -> list[str]:
    """Shard paths of an export folder (from its ``index.json``), or the given list / brace pattern as is."""
    if isinstance(source, (str, os.PathLike)) and Path(source).expanduser().is_dir():
        folder = Path(source).expanduser()
        index = folder / INDEX
        if not index.is_file():
            raise ArgumentError(f"{folder}: no {INDEX}; pass the shard paths (or a brace pattern) instead")
        return [str(folder / s["file"]) for s in json.loads(index.read_text())["shards"]]
    if isinstance(source, (str, os.PathLike)):
        return [str(source)]
    return [str(s) for s in source]


def read_webdataset(
    source: PathLike | Iterable[str],
    *,
    split_by_node: bool = True,
    split_by_worker: bool = True,
    shardshuffle: int | bool = False,
) -> Any:
    """Stream Samples from WebDataset shards (an ``IterableDataset`` for a ``DataLoader``).

    Shards are split between ranks (``webdataset.split_by_node``: ``torch.distributed`` or ``RANK``/``WORLD_SIZE``)
    and then between DataLoader workers, so each sample is visited exactly once per epoch when there are at least
    ranks × workers shards.

    Args:
        source: an export folder (its ``index.json``), a brace pattern (``"s3://b/shard-{000000..000099}.tar"``
            through ``pipe:`` URLs) or a list of shard URLs.
        split_by_node: split shards between distributed ranks.
        split_by_worker: split shards between DataLoader workers.
        shardshuffle: ``False`` keeps the shard order; a number shuffles shards with that buffer
            (``webdataset.WebDataset``).

    Returns:
        A ``webdataset.WebDataset`` pipeline yielding Samples; chain ``.shuffle(n)``, ``.map(transform)``,
        ``.batched(...)`` as usual.
    """
    wds = _need("webdataset")
    urls = shard_urls(source)
    pipe = wds.WebDataset(
        urls,
        nodesplitter=wds.split_by_node if split_by_node else None,
        workersplitter=wds.split_by_worker if split_by_worker else None,
        shardshuffle=shardshuffle,
        empty_check=False,
    )
    return pipe.map(sample_from_wds)
