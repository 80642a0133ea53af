"""Joint transforms on a :class:`~nucfuse_datasets.schema.Sample` with torchvision v2 and albumentations.

A torchvision v2 transform passes objects it does not recognise through untouched, so handing it a Sample
would return the Sample *unchanged, without a word*. The adapters here hand the library what it expects and
turn its output back into a valid Sample:

* :class:`TorchVision` wraps any ``torchvision.transforms.v2`` transform (or ``Compose``): the image becomes a
  ``tv_tensors.Image`` (``3×H×W`` ``uint8``), ``instances`` and ``ignore`` become ``tv_tensors.Mask`` (resampled
  with nearest neighbour, never interpolated), so geometric ops move all of them identically and photometric
  ops touch the image only;
* :class:`Albumentations` wraps an albumentations transform or ``Compose`` (``image=`` plus ``masks=[instances,
  ignore]``; albumentations resamples masks with nearest neighbour).

After the transform, instance ids are integral ids of the input (nearest sampling cannot invent new ones);
instances a crop cut to nothing disappear, and ``relabel=True`` (the default) renumbers the survivors to
``1..N`` in the order of their old ids, with ``classes`` compacted to match, so the Sample keeps the
library's convention (``n_instances == instances.max()``).

Datasets wrap these automatically: ``get_dataset(..., transforms=v2.RandomHorizontalFlip(p=1.0))`` works, and a
transform that cannot handle a Sample (a torchvision v1 transform, or a raw v2/albumentations op buried in a
plain ``Compose``) raises :class:`~nucfuse_datasets.errors.ArgumentError` when the dataset is built
(:func:`as_sample_transform`).

Example:
    >>> import numpy as np
    >>> from torchvision.transforms import v2
    >>> from nucfuse_datasets.schema import Sample, SampleMeta
    >>> inst = np.zeros((4, 6), np.int32); inst[1:3, 0:2] = 1
    >>> s = Sample(image=np.zeros((4, 6, 3), np.uint8), instances=inst,
    ...            meta=SampleMeta(dataset="demo", sample_id="a", split="all"))
    >>> out = TorchVision(v2.RandomHorizontalFlip(p=1.0))(s)
    >>> out.instances[1].tolist()
    [0, 0, 0, 0, 1, 1]
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from nucfuse_datasets.errors import ArgumentError, DependencyNotFoundError, InvalidSampleError
from nucfuse_datasets.io.store import relabel_sequential
from nucfuse_datasets.schema import Sample

__all__ = ["Albumentations", "TorchVision", "as_sample_transform", "finish_sample"]

# albumentations asks PyPI for a newer version, synchronously, when it is imported; a data library must not make
# network calls on its user's behalf (and offline clusters would wait for the timeout). An explicit setting wins.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def finish_sample(
    sample: Sample,
    image: np.ndarray,
    instances: np.ndarray,
    ignore: np.ndarray | None,
    *,
    relabel: bool = True,
    what: str = "transform",
) -> Sample:
    """Build the transformed Sample from a library's output arrays (checks, casts, relabelling).

    Args:
        sample: the input Sample (for ``classes``, ``class_names`` and ``meta``).
        image: ``H×W×3`` image from the library (must still be ``uint8``).
        instances: ``H×W`` instance map from the library (integral values).
        ignore: ``H×W`` ignore mask or ``None``.
        relabel: renumber the surviving ids to ``1..N`` (ascending old id) and compact ``classes``.
        what: name of the transform, for error messages.

    Raises:
        InvalidSampleError: the transform changed the image dtype or channels, or the maps no longer match.

    Example:
        >>> import numpy as np
        >>> from nucfuse_datasets.schema import Sample, SampleMeta
        >>> inst = np.array([[0, 2], [5, 5]], np.int32)
        >>> s = Sample(image=np.zeros((2, 2, 3), np.uint8), instances=inst,
        ...            classes=np.array([0, 1, 2, 1, 1, 2], np.int32),
        ...            class_names=("background", "a", "b"), meta=SampleMeta(dataset="d", sample_id="x", split="all"))
        >>> out = finish_sample(s, s.image[:1], inst[:1], None)  # a crop that keeps only id 2
        >>> out.instances.tolist(), out.classes.tolist()
        ([[0, 1]], [0, 2])
    """
    where = f"{sample.meta.dataset}/{sample.meta.sample_id}"
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InvalidSampleError(
            f"{where}: {what} returned an image of dtype {image.dtype} and shape {image.shape}; a Sample image is "
            "H×W×3 uint8. Keep ToDtype/Normalize (and other float or channel-changing steps) out of the Sample "
            "transform and apply them to the batch tensors, or pass to_sample=False to get the library's output"
        )
    if instances.shape != image.shape[:2] or (ignore is not None and ignore.shape != image.shape[:2]):
        raise InvalidSampleError(
            f"{where}: {what} returned maps of shape {instances.shape} for an image of shape {image.shape[:2]}; "
            "the image and the masks must be transformed together"
        )
    inst = np.ascontiguousarray(instances).astype(np.int32, copy=False)
    classes = sample.classes
    if relabel:
        inst, old_ids = relabel_sequential(inst)
        if classes is not None:
            classes = np.concatenate([[0], classes[old_ids]]).astype(np.int32)
    return sample.replace(
        image=np.ascontiguousarray(image),
        instances=inst,
        ignore=None if ignore is None else np.ascontiguousarray(ignore).astype(bool),
        classes=classes,
    )


class TorchVision:
    """Apply a torchvision v2 transform jointly to a Sample's image, instances and ignore mask.

    Args:
        transform: a ``torchvision.transforms.v2`` transform or ``Compose``. It receives a dict
            ``{"image": tv_tensors.Image, "instances": tv_tensors.Mask, "ignore": tv_tensors.Mask | None,
            "meta": SampleMeta}``; use per-type fills such as ``fill={tv_tensors.Image: 255, tv_tensors.Mask: 0}``.
        relabel: renumber surviving instances to ``1..N`` (see :func:`finish_sample`).
        to_sample: ``False`` returns the transform's dict output unchanged (for pipelines that end with
            ``ToDtype``/``Normalize``); ``True`` (default) returns a validated Sample.

    Raises:
        DependencyNotFoundError: torchvision is not installed.

    Example:
        >>> import numpy as np
        >>> from torchvision.transforms import v2
        >>> from nucfuse_datasets.schema import Sample, SampleMeta
        >>> s = Sample(image=np.zeros((8, 8, 3), np.uint8), instances=np.ones((8, 8), np.int32),
        ...            meta=SampleMeta(dataset="demo", sample_id="a", split="all"))
        >>> TorchVision(v2.RandomResizedCrop(4))(s).shape
        (4, 4)
    """

    def __init__(self, transform: Callable[..., Any], *, relabel: bool = True, to_sample: bool = True) -> None:
        try:
            from torchvision.transforms import v2  # noqa: F401
        except ImportError:  # pragma: no cover - torchvision ships with the train extra
            raise DependencyNotFoundError(
                "TorchVision transforms need torchvision: pip install 'nucfuse-datasets[train]'"
            ) from None
        self.transform = transform
        self.relabel = relabel
        self.to_sample = to_sample

    def __call__(self, sample: Sample) -> Any:
        """The transformed Sample (or the transform's raw dict output when ``to_sample=False``)."""
        import torch
        from torchvision import tv_tensors

        if not isinstance(sample, Sample):
            raise ArgumentError(f"TorchVision expects a Sample, got {type(sample).__name__}")
        item = {
            "image": tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(sample.image)).permute(2, 0, 1)),
            "instances": tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(sample.instances))),
            "ignore": None if sample.ignore is None else tv_tensors.Mask(torch.from_numpy(sample.ignore.copy())),
            "meta": sample.meta,
        }
        out = self.transform(item)
        if not self.to_sample:
            return out
        if not isinstance(out, dict) or not isinstance(out.get("image"), torch.Tensor):
            raise InvalidSampleError(f"{self.transform!r} returned {type(out).__name__}, not the dict it was given")
        image = out["image"]
        if image.ndim != 3:
            raise InvalidSampleError(f"{self.transform!r} returned an image of shape {tuple(image.shape)}, not 3×H×W")
        ignore = out.get("ignore")
        return finish_sample(
            sample,
            image.permute(1, 2, 0).numpy(),
            out["instances"].numpy(),
            None if ignore is None else ignore.numpy(),
            relabel=self.relabel,
            what=repr(self.transform),
        )

    def __repr__(self) -> str:
        return f"TorchVision({self.transform!r})"


class Albumentations:
    """Apply an albumentations transform or ``Compose`` to a Sample (``image=`` and ``masks=``).

    The transform is called as ``transform(image=H×W×3 uint8, masks=[instances, ignore uint8])`` with the ids as
    ``float32`` (exact below 2**24; OpenCV's int32 path rounds nearest-neighbour coordinates differently from the
    image's);
    albumentations moves masks with its geometric ops (nearest neighbour) and leaves them alone in
    pixel-level ops.

    Args:
        transform: an albumentations ``BasicTransform`` or ``BaseCompose``.
        relabel: renumber surviving instances to ``1..N`` (see :func:`finish_sample`).

    Raises:
        DependencyNotFoundError: albumentations is not installed.

    Example:
        >>> import albumentations as A
        >>> import numpy as np
        >>> from nucfuse_datasets.schema import Sample, SampleMeta
        >>> inst = np.zeros((4, 6), np.int32); inst[1:3, 0:2] = 1
        >>> s = Sample(image=np.zeros((4, 6, 3), np.uint8), instances=inst,
        ...            meta=SampleMeta(dataset="demo", sample_id="a", split="all"))
        >>> Albumentations(A.HorizontalFlip(p=1.0))(s).instances[1].tolist()
        [0, 0, 0, 0, 1, 1]
    """

    def __init__(self, transform: Callable[..., Any], *, relabel: bool = True) -> None:
        try:
            import albumentations  # noqa: F401
        except ImportError:
            raise DependencyNotFoundError(
                "Albumentations transforms need albumentations: pip install 'nucfuse-datasets[augment]'"
            ) from None
        self.transform = transform
        self.relabel = relabel

    def __call__(self, sample: Sample) -> Sample:
        """The transformed Sample."""
        if not isinstance(sample, Sample):
            raise ArgumentError(f"Albumentations expects a Sample, got {type(sample).__name__}")
        # float32 ids (exact below 2**24): OpenCV warps int32 maps through another path whose nearest-neighbour
        # rounding differs from the image's, so a few pixels would end up with a neighbour's id.
        ids = sample.instances.astype(np.float32) if int(sample.instances.max(initial=0)) < 2**24 else sample.instances
        masks = [ids] + ([] if sample.ignore is None else [sample.ignore.astype(np.uint8)])
        out = self.transform(image=sample.image, masks=masks)
        new_masks = list(out["masks"])
        image = np.asarray(out["image"])
        return finish_sample(
            sample,
            image,
            np.rint(np.asarray(new_masks[0])),
            None if sample.ignore is None else np.asarray(new_masks[1]) > 0,
            relabel=self.relabel,
            what=repr(self.transform),
        )

    def __repr__(self) -> str:
        return f"Albumentations({self.transform!r})"


def _kind(obj: Any) -> str | None:
    """``"tv2"``, ``"tv1"``, ``"albu"`` for library transforms (without importing the libraries), else None."""
    if isinstance(obj, (TorchVision, Albumentations)):
        return None
    tv2 = sys.modules.get("torchvision.transforms.v2")
    if tv2 is not None and isinstance(obj, tv2.Transform):
        return "tv2"
    albu = sys.modules.get("albumentations")
    if albu is not None and isinstance(obj, (albu.BaseCompose, albu.BasicTransform)):
        return "albu"
    if type(obj).__module__ == "torchvision.transforms.transforms":
        return "tv1"
    return None


def _buried(obj: Any, depth: int = 0) -> list[str]:
    """Raw library transforms inside a container that is not one (they would see the Sample itself)."""
    found: list[str] = []
    inner = getattr(obj, "transforms", None)
    if depth > 3 or not isinstance(inner, (list, tuple)):
        return found
    for t in inner:
        if _kind(t) is not None:
            found.append(repr(t))
        else:
            found.extend(_buried(t, depth + 1))
    return found


def as_sample_transform(transform: Any) -> Any:
    """Wrap torchvision v2 and albumentations transforms so that they act on Samples; reject what cannot.

    Datasets call this on their ``transforms=`` argument. Plain callables (your own ``Sample -> Any``
    functions, :class:`TorchVision`, :class:`Albumentations`) are returned unchanged.

    Args:
        transform: ``None``, a callable, a torchvision v2 transform or an albumentations transform.

    Returns:
        ``None``, the callable itself, or the adapter wrapping it.

    Raises:
        ArgumentError: a torchvision v1 transform (it cannot transform a Sample's masks jointly), a raw v2 or
            albumentations transform inside a plain container (it would pass the Sample through unchanged), or
            something that is not callable.

    Example:
        >>> from torchvision.transforms import v2
        >>> as_sample_transform(v2.RandomHorizontalFlip())
        TorchVision(RandomHorizontalFlip(p=0.5))
    """
    if transform is None:
        return None
    kind = _kind(transform)
    if kind == "tv2":
        return TorchVision(transform)
    if kind == "albu":
        return Albumentations(transform)
    if kind == "tv1":
        raise ArgumentError(
            f"{transform!r} is a torchvision.transforms (v1) transform: it cannot move a Sample's instance map "
            "with its image. Use the same op from torchvision.transforms.v2 (wrapped automatically, or explicitly "
            "with nucfuse_datasets.transforms.adapters.TorchVision)"
        )
    if not callable(transform):
        raise ArgumentError(f"transforms must be callable (Sample -> Any), got {type(transform).__name__}")
    buried = _buried(transform)
    if buried:
        raise ArgumentError(
            f"{type(transform).__name__} contains library transforms that would receive the Sample itself and "
            f"return it unchanged: {', '.join(buried)}. Wrap each in nucfuse_datasets.transforms.TorchVision(...) "
            "or Albumentations(...), or use the library's own Compose"
        )
    return transform
