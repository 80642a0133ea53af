"""The one sample schema shared by every dataset, and a ``collate`` function for DataLoaders.

A :class:`Sample` holds one H&E tile and its nuclei:

* ``image``: ``H×W×3`` ``uint8`` RGB;
* ``instances``: ``H×W`` ``int32`` instance map, 0 = background, 1..N = nuclei;
* ``classes`` (optional): ``int32`` lookup array of length N + 1, ``classes[i]`` is the class id
  of instance ``i`` and ``classes[0] == 0``; class ids index ``class_names``, whose entry 0 is
  ``"background"``. The per-pixel type map is ``classes[instances]``;
* ``ignore`` (optional): ``H×W`` ``bool`` mask of ambiguous regions to leave out of scoring;
* ``meta``: :class:`SampleMeta`.

Validation checks shapes and dtypes only (constant time), so building a Sample in
``__getitem__`` is cheap; :meth:`Sample.validate_values` scans the pixels as well.

Example:
    >>> import numpy as np
    >>> from nucfuse_datasets.schema import Sample, SampleMeta
    >>> s = Sample(
    ...     image=np.zeros((4, 5, 3), np.uint8),
    ...     instances=np.zeros((4, 5), np.int32),
    ...     meta=SampleMeta(dataset="demo", sample_id="a", split="train"),
    ... )
    >>> s.shape, s.n_instances
    ((4, 5), 0)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nucfuse_datasets.errors import InvalidSampleError

__all__ = ["Sample", "SampleMeta", "collate"]

MetaValue = str | int | float | bool | None


class SampleMeta(BaseModel):
    """Provenance of one sample.

    Attributes:
        dataset: registered name of the source dataset (``"monuseg"``).
        sample_id: id unique within the dataset (stable across library versions).
        split: the *source* split the tile comes from (``"train"``, ``"test"``, ``"all"``, ``"fold1"``...).
        organ: organ or tissue, when the source says.
        magnification: objective magnification (20, 40) when known.
        mpp: microns per pixel when known.
        original_file: file name (relative to the native layout) the image came from.
        extra: further dataset-specific facts (patient, species, has_macrophage, patch origin...).

    Example:
        >>> m = SampleMeta(dataset="monuseg", sample_id="TCGA-21-5784-01Z-00-DX1", split="train", organ="liver")
        >>> m.model_dump()["organ"], m.extra
        ('liver', {})
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str
    sample_id: str
    split: str
    organ: str | None = None
    magnification: float | None = None
    mpp: float | None = None
    original_file: str | None = None
    extra: dict[str, MetaValue] = Field(default_factory=dict)


def _as_array(value: Any, name: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(value).__name__}")
    return value


class Sample(BaseModel):
    """One tile with its instance map, optional classes and ignore mask, and metadata.

    Raises:
        InvalidSampleError: an array has the wrong number of dimensions, shape or dtype.

    Example:
        >>> import numpy as np
        >>> inst = np.zeros((4, 4), np.int32); inst[1:3, 1:3] = 1
        >>> s = Sample(image=np.zeros((4, 4, 3), np.uint8), instances=inst,
        ...            classes=np.array([0, 2], np.int32), class_names=("background", "a", "b"),
        ...            meta=SampleMeta(dataset="demo", sample_id="x", split="all"))
        >>> s.n_instances, int(s.type_map()[1, 1])
        (1, 2)
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=False, extra="forbid")

    image: np.ndarray
    instances: np.ndarray
    classes: np.ndarray | None = None
    class_names: tuple[str, ...] | None = None
    ignore: np.ndarray | None = None
    meta: SampleMeta

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise InvalidSampleError(_summarise(exc, data.get("meta"))) from None

    @field_validator("image", mode="before")
    @classmethod
    def _check_image(cls, v: Any) -> np.ndarray:
        v = _as_array(v, "image")
        if v.ndim != 3 or v.shape[2] != 3:
            raise ValueError(f"image must be H×W×3 RGB, got shape {v.shape}")
        if v.dtype != np.uint8:
            raise ValueError(f"image must be uint8, got {v.dtype}")
        return v

    @field_validator("instances", mode="before")
    @classmethod
    def _check_instances(cls, v: Any) -> np.ndarray:
        v = _as_array(v, "instances")
        if v.ndim != 2:
            raise ValueError(f"instances must be a 2-D H×W map, got shape {v.shape}")
        if v.dtype != np.int32:
            raise ValueError(f"instances must be int32, got {v.dtype}")
        return v

    @field_validator("classes", mode="before")
    @classmethod
    def _check_classes(cls, v: Any) -> np.ndarray | None:
        if v is None:
            return None
        v = _as_array(v, "classes")
        if v.ndim != 1 or v.dtype != np.int32:
            raise ValueError(f"classes must be a 1-D int32 lookup array, got {v.dtype} {v.shape}")
        return v

    @field_validator("ignore", mode="before")
    @classmethod
    def _check_ignore(cls, v: Any) -> np.ndarray | None:
        if v is None:
            return None
        v = _as_array(v, "ignore")
        if v.ndim != 2 or v.dtype != np.bool_:
            raise ValueError(f"ignore must be a 2-D bool mask, got {v.dtype} {v.shape}")
        return v

    @model_validator(mode="after")
    def _check_shapes(self) -> Sample:
        hw = self.image.shape[:2]
        if self.instances.shape != hw:
            raise ValueError(f"instances shape {self.instances.shape} differs from image shape {hw}")
        if self.ignore is not None and self.ignore.shape != hw:
            raise ValueError(f"ignore shape {self.ignore.shape} differs from image shape {hw}")
        if self.classes is not None and self.class_names is None:
            raise ValueError("classes given without class_names")
        return self

    # ------------------------------------------------------------------ helpers
    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the tile."""
        return (int(self.image.shape[0]), int(self.image.shape[1]))

    @property
    def n_instances(self) -> int:
        """Number of distinct nuclei (non-zero ids) in ``instances``."""
        ids = np.unique(self.instances)
        return int(ids.size - (1 if ids.size and ids[0] == 0 else 0))

    def type_map(self) -> np.ndarray | None:
        """Per-pixel class ids (``classes[instances]``), or ``None`` without classes."""
        if self.classes is None:
            return None
        return self.classes[self.instances]

    def validate_values(self) -> Sample:
        """Check pixel values too: ids non-negative, classes cover every id, class ids in range.

        Returns:
            The sample itself.

        Raises:
            InvalidSampleError: a value is out of range.
        """
        where = f"{self.meta.dataset}/{self.meta.sample_id}"
        if self.instances.size and int(self.instances.min()) < 0:
            raise InvalidSampleError(f"{where}: instance ids must be >= 0")
        if self.classes is not None:
            top = int(self.instances.max()) if self.instances.size else 0
            if self.classes.size < top + 1:
                raise InvalidSampleError(
                    f"{where}: classes has {self.classes.size} entries but the largest id is {top}"
                )
            if self.class_names is None:
                raise InvalidSampleError(f"{where}: classes given without class_names")
            if self.classes.size and (int(self.classes.min()) < 0 or int(self.classes.max()) >= len(self.class_names)):
                raise InvalidSampleError(f"{where}: class ids must index class_names {self.class_names}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain ``dict`` view (arrays shared, not copied); ``meta`` becomes a dict too."""
        return {
            "image": self.image,
            "instances": self.instances,
            "classes": self.classes,
            "class_names": self.class_names,
            "ignore": self.ignore,
            "meta": self.meta.model_dump(),
        }

    def replace(self, **changes: Any) -> Sample:
        """A new validated Sample with some fields replaced (for transforms).

        Example:
            >>> import numpy as np
            >>> s = Sample(image=np.zeros((2, 2, 3), np.uint8), instances=np.zeros((2, 2), np.int32),
            ...            meta=SampleMeta(dataset="d", sample_id="x", split="all"))
            >>> s.replace(image=np.full((2, 2, 3), 255, np.uint8)).image.max()
            np.uint8(255)
        """
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        fields.update(changes)
        return type(self)(**fields)

    def __str__(self) -> str:
        return self.__repr__()

    def __repr__(self) -> str:
        return (
            f"Sample({self.meta.dataset}/{self.meta.sample_id}, split={self.meta.split!r}, "
            f"shape={self.shape}, classes={'yes' if self.classes is not None else 'no'}, "
            f"ignore={'yes' if self.ignore is not None else 'no'})"
        )


def _summarise(exc: ValidationError, meta: Any) -> str:
    where = ""
    if isinstance(meta, SampleMeta):
        where = f"{meta.dataset}/{meta.sample_id}: "
    elif isinstance(meta, dict) and "dataset" in meta:
        where = f"{meta.get('dataset')}/{meta.get('sample_id')}: "
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "sample"
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return f"{where}invalid Sample ({'; '.join(parts)})"


def _batch_tensor(shape: tuple[int, ...], dtype: np.dtype[Any]) -> Any:
    """An uninitialised CPU tensor for a batch; in a ``DataLoader`` worker, allocated in shared memory.

    A tensor made in a worker is moved to shared memory when it is sent to the main process, which
    copies it once more; allocating it there from the start (as torch's ``default_collate`` does)
    saves that copy, which otherwise makes two workers slower than none on cheap samples.
    """
    import torch
    from torch.utils.data import get_worker_info

    tdtype = torch.from_numpy(np.empty(0, dtype)).dtype
    new_shared = getattr(torch.UntypedStorage, "_new_shared", None)
    if get_worker_info() is None or new_shared is None:
        return torch.empty(shape, dtype=tdtype)
    numel = int(np.prod(shape))
    storage = new_shared(numel * np.dtype(dtype).itemsize)
    return torch.empty(0, dtype=tdtype).set_(storage).view(shape)


_SPLIT: list[Any] = []  # [cv2.split] once OpenCV is found to deinterleave into given arrays, [None] without it


def _chw_into(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst[c] = src[..., c]``: an ``H×W×3`` ``uint8`` image copied channel-first into ``dst`` (``3×H×W``).

    OpenCV's ``split`` deinterleaves about 4× faster than numpy's strided copy (the largest part of
    ``collate``); it is used when OpenCV is installed (the ``augment`` extra brings it) and passes a
    one-time check that it writes into the given arrays, otherwise numpy does the copy.
    """
    if not _SPLIT:
        _SPLIT.append(None)
        try:
            import cv2

            probe = np.arange(2 * 5 * 3, dtype=np.uint8).reshape(2, 5, 3)
            out = np.zeros((3, 2, 5), np.uint8)
            cv2.split(probe, [out[0], out[1], out[2]])
            if np.array_equal(out, probe.transpose(2, 0, 1)):
                _SPLIT[0] = cv2.split
        except Exception:  # not installed, or a broken install: numpy
            pass
    split = _SPLIT[0]
    fits = src.ndim == 3 and src.shape[2] == 3 and dst.shape == (3, *src.shape[:2])
    if split is not None and fits and src.dtype == dst.dtype == np.uint8:
        split(src, [dst[0], dst[1], dst[2]])
    else:
        dst[...] = src.transpose(2, 0, 1)


def _class_lookups(arrays: list[np.ndarray | None]) -> list[Any]:
    """Per-sample class lookups as tensors that are views of one buffer (one shared-memory block in a worker)."""
    present = [a for a in arrays if a is not None]
    if not present:
        return [None] * len(arrays)
    buffer = _batch_tensor((sum(a.size for a in present),), np.result_type(*present))
    flat = buffer.numpy()
    out: list[Any] = []
    start = 0
    for a in arrays:
        if a is None:
            out.append(None)
            continue
        flat[start : start + a.size] = a.ravel()
        out.append(buffer[start : start + a.size].view(a.shape))
        start += a.size
    return out


def collate(batch: Sequence[Sample | dict[str, Any]]) -> dict[str, Any]:
    """Collate Samples (or their ``to_dict()`` form) into a batch for a ``DataLoader``.

    Images become a ``uint8`` tensor ``B×3×H×W`` and instance maps an ``int32`` tensor
    ``B×H×W`` when every tile has the same size; otherwise both stay lists of tensors.
    ``ignore`` is stacked the same way (``None`` entries become all-False masks when at
    least one sample has a mask). ``classes`` and ``meta`` stay per-sample lists.

    Each batch tensor is assembled in one contiguous buffer (channels moved to the front while
    copying) and wrapped as a tensor without a further copy, so no multi-threaded
    ``torch.stack`` of permuted views runs, which stalls when the cores are busy. Inside a
    ``DataLoader`` worker the buffer is allocated in shared memory from the start, as torch's
    ``default_collate`` does, so torch's own worker transfer sends it without another copy.

    Example:
        >>> import numpy as np
        >>> from torch.utils.data import DataLoader
        >>> s = Sample(image=np.zeros((8, 8, 3), np.uint8), instances=np.zeros((8, 8), np.int32),
        ...            meta=SampleMeta(dataset="d", sample_id="x", split="all"))
        >>> collate([s, s])["image"].shape
        torch.Size([2, 3, 8, 8])
    """
    import torch

    items = [b.to_dict() if isinstance(b, Sample) else dict(b) for b in batch]
    if not items:
        raise InvalidSampleError("collate() got an empty batch")
    images = [np.asarray(it["image"]) for it in items]
    instances = [np.asarray(it["instances"]) for it in items]
    lookups = [None if it.get("classes") is None else np.asarray(it["classes"]) for it in items]
    masks = [it.get("ignore") for it in items]
    ignores = None
    if any(m is not None for m in masks):
        ignores = [
            np.zeros(inst.shape, bool) if m is None else np.asarray(m) for inst, m in zip(instances, masks, strict=True)
        ]
    same = len({a.shape[:2] for a in images}) == 1

    def stack(key: str, arrays: list[np.ndarray], chw: bool = False) -> Any:
        if not same:
            return [torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1) if chw else a)) for a in arrays]
        first = arrays[0]
        shape = (first.shape[2], *first.shape[:2]) if chw else first.shape
        tensor = _batch_tensor((len(arrays), *shape), np.result_type(*arrays))
        out = tensor.numpy()
        for k, a in enumerate(arrays):
            if chw:
                _chw_into(out[k], a)
            else:
                out[k] = a
        return tensor

    classes = _class_lookups(lookups)
    out: dict[str, Any] = {
        "image": stack("image", images, chw=True),
        "instances": stack("instances", instances),
        "classes": classes,
        "class_names": items[0].get("class_names"),
        "meta": [it["meta"] if isinstance(it["meta"], dict) else dict(it["meta"]) for it in items],
        "ignore": None if ignores is None else stack("ignore", ignores),
    }
    return out
