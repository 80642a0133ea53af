"""Class-aware training and scoring of the recipes (opt-in; the paper trains class-agnostic).

``data.classes`` switches it on:

* ``"none"`` (default): the paper's binary setting, unchanged;
* ``"auto"``: every training dataset's default grouping
  (:data:`~nucfuse_datasets.benchmark.class_groupings.DEFAULT_GROUPING`), which must be the same for all of them;
* a grouping name of :data:`~nucfuse_datasets.benchmark.class_groupings.GROUPINGS` (``"pannuke"``, ``"consep-4"``,
  ``"consep-7"``, ``"monusac"``, ``"puma-10"``, ``"puma-3"``, ``"synthetic"``...): it must map every training
  dataset's classes.

The training split then keeps the datasets' classes (``NucFuseTrain(keep_classes=True)``), mapped to the grouping's
evaluation classes ``1..K`` before the augmentation (:class:`MapClasses`; the augmentations carry a Sample's class
lookup with its instances), the targets gain a ``type_map``, the model's type head gets ``K + 1`` channels
(:meth:`~examples.common.spec.RecipeSpec.class_model_config`) and its type losses train. The checkpoint records the
grouping (:func:`class_info`), so its evaluation predicts a class per instance (HoVer-Net's majority vote,
:func:`nucfuse_datasets.transforms.postprocess.instance_classes`) and scores it with ``eval.protocol``
(:func:`eval_protocol`). The validation PQ that selects ``best.pt`` stays the binary one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from examples.common.transforms import Compose
from nucfuse_datasets.benchmark.class_groupings import DEFAULT_GROUPING, GROUPINGS, ClassGrouping, get_grouping
from nucfuse_datasets.datasets._base import NucleiDataset
from nucfuse_datasets.errors import ArgumentError
from nucfuse_datasets.metrics import CLASS_PROTOCOLS
from nucfuse_datasets.schema import Sample

__all__ = [
    "CLASS_DATASETS",
    "MapClasses",
    "attach_classes",
    "class_info",
    "class_setting",
    "default_protocol",
    "eval_protocol",
    "grouping_of",
    "training_grouping",
]

#: Datasets whose tiles carry nucleus classes (the keys of ``DEFAULT_GROUPING``).
CLASS_DATASETS = tuple(DEFAULT_GROUPING)


def class_setting(cfg: Mapping[str, Any]) -> str | None:
    """``data.classes``: ``None`` for the binary setting, else ``"auto"`` or a grouping name.

    Raises:
        ArgumentError: any other value.

    Example:
        >>> class_setting({"data": {}}), class_setting({"data": {"classes": "pannuke"}})
        (None, 'pannuke')
    """
    value = cfg.get("data", {}).get("classes", "none")
    if value in (None, False, "", "none"):
        return None
    if value == "auto" or value in GROUPINGS:
        return str(value)
    raise ArgumentError(
        f'data.classes = {value!r}: use "none" (binary, the paper\'s setting), "auto" (each dataset\'s default '
        f"grouping) or a class grouping: {', '.join(GROUPINGS)}"
    )


def training_grouping(parts: Mapping[str, NucleiDataset], setting: str) -> ClassGrouping:
    """The one grouping every training dataset is mapped to under ``data.classes = setting``.

    Raises:
        ArgumentError: a dataset without classes, a dataset the named grouping does not map, or (``"auto"``)
            datasets whose default groupings differ.

    Example:
        >>> import nucfuse_datasets as nf
        >>> ds = nf.get_dataset("synthetic", root=getfixture("tmp_path"), n_tiles=2, tile_size=64)
        >>> training_grouping({"synthetic": ds}, "auto").names
        ('epithelial', 'lymphocyte')
    """
    chosen: dict[str, str] = {}
    for tag, ds in parts.items():
        if not ds.class_names:
            raise ArgumentError(
                f"data.classes = {setting!r}: training dataset {tag!r} ({ds.name}) has no nucleus classes; "
                f"class-aware training needs datasets with classes ({', '.join(CLASS_DATASETS)}): remove {tag!r} "
                'from data.datasets, or set data.classes = "none" for the binary setting'
            )
        name = DEFAULT_GROUPING.get(ds.name, "") if setting == "auto" else setting
        if not name:
            raise ArgumentError(
                f'data.classes = "auto": {ds.name} has classes but no default grouping; name one of '
                f"{', '.join(GROUPINGS)} in data.classes"
            )
        grouping = get_grouping(name)
        if tuple(ds.class_names) not in grouping.sources:
            raise ArgumentError(
                f"data.classes = {setting!r}: grouping {name!r} maps {grouping.dataset}'s classes, not those of "
                f"training dataset {tag!r} ({ds.name}: {', '.join(ds.class_names[1:])}); name a grouping for "
                "these classes, or train on datasets that share one"
            )
        chosen[tag] = name
    names = sorted(set(chosen.values()))
    if len(names) != 1:
        listing = ", ".join(f"{tag}: {name}" for tag, name in chosen.items())
        raise ArgumentError(
            f"data.classes = {setting!r}: the training datasets have different class groupings ({listing}); "
            "class-aware training needs one set of classes: train on datasets of one grouping"
        )
    return get_grouping(names[0])


class MapClasses:
    """Sample transform: the dataset's class ids → the grouping's evaluation classes ``1..K`` (0 = unclassified).

    Example:
        >>> import numpy as np
        >>> from nucfuse_datasets.schema import SampleMeta
        >>> from nucfuse_datasets.datasets.consep import ORIGINAL_CLASS_NAMES
        >>> s = Sample(image=np.zeros((1, 2, 3), np.uint8), instances=np.array([[1, 2]], np.int32),
        ...            classes=np.array([0, 4, 6], np.int32), class_names=ORIGINAL_CLASS_NAMES,
        ...            meta=SampleMeta(dataset="consep", sample_id="x", split="all"))
        >>> out = MapClasses(get_grouping("consep-4"))(s)
        >>> out.classes.tolist(), out.class_names[1:]
        ([0, 3, 4], ('other', 'inflammatory', 'epithelial', 'spindle-shaped'))
    """

    def __init__(self, grouping: ClassGrouping) -> None:
        self.grouping = grouping
        self.names = ("background", *grouping.names)

    def __call__(self, sample: Sample) -> Sample:
        if sample.classes is None:
            raise ArgumentError(
                f"{sample.meta.dataset}/{sample.meta.sample_id}: class-aware training needs the tile's classes; load "
                "it with NucFuseTrain(..., keep_classes=True)"
            )
        mapped = self.grouping.map(sample.classes, sample.class_names).astype("int32")
        return sample.replace(classes=mapped, class_names=self.names)

    def __repr__(self) -> str:
        return f"MapClasses({self.grouping.name!r})"


def attach_classes(train_ds: Any, cfg: Mapping[str, Any]) -> ClassGrouping | None:
    """Put :class:`MapClasses` in front of the training split's transforms; the grouping, or ``None`` (binary).

    ``train_ds`` is a ``NucFuseTrain`` built with ``keep_classes=True``; the grouping is also kept as
    ``train_ds.class_grouping`` (read back with :func:`grouping_of`).

    Raises:
        ArgumentError: see :func:`class_setting` and :func:`training_grouping`.
    """
    setting = class_setting(cfg)
    if setting is None:
        return None
    grouping = training_grouping(train_ds.parts, setting)
    current = train_ds.transforms
    train_ds.transforms = MapClasses(grouping) if current is None else Compose([MapClasses(grouping), current])
    train_ds.class_grouping = grouping
    return grouping


def grouping_of(train_ds: Any) -> ClassGrouping | None:
    """The grouping :func:`attach_classes` gave a training split (``None``: binary)."""
    grouping: ClassGrouping | None = getattr(train_ds, "class_grouping", None)
    return grouping


def class_info(grouping: ClassGrouping | None) -> dict[str, Any] | None:
    """What a checkpoint records about its classes (``None``: a binary checkpoint).

    Example:
        >>> class_info(get_grouping("synthetic"))
        {'grouping': 'synthetic', 'dataset': 'synthetic', 'names': ['epithelial', 'lymphocyte'], 'n_classes': 2}
    """
    if grouping is None:
        return None
    names = list(grouping.names)
    return {"grouping": grouping.name, "dataset": grouping.dataset, "names": names, "n_classes": len(names)}


def default_protocol(grouping: str) -> str:
    """The class-aware protocol a grouping's literature reports: PanNuke's for PanNuke, HoVer-Net's otherwise.

    Example:
        >>> default_protocol("pannuke"), default_protocol("consep-4")
        ('pannuke', 'hovernet')
    """
    return "pannuke" if get_grouping(grouping).dataset == "pannuke" else "hovernet"


def eval_protocol(cfg: Mapping[str, Any], info: Mapping[str, Any] | None) -> str | None:
    """The protocol to score a checkpoint with: ``None`` (instances only) for a binary checkpoint or ``"none"``.

    ``eval.protocol``: ``""`` = :func:`default_protocol` of the checkpoint's grouping; ``"pannuke"``, ``"conic"``,
    ``"hovernet"``; ``"none"`` = instance metrics only (the type head unused).

    Raises:
        ArgumentError: an unknown protocol, or one asked of a binary checkpoint.

    Example:
        >>> eval_protocol({"eval": {}}, {"grouping": "synthetic"}), eval_protocol({"eval": {}}, None)
        ('hovernet', None)
    """
    asked = str(cfg.get("eval", {}).get("protocol") or "")
    if asked == "none":
        return None
    if asked and asked not in CLASS_PROTOCOLS:
        raise ArgumentError(f'eval.protocol = {asked!r}: use "", "none" or one of {", ".join(CLASS_PROTOCOLS)}')
    if info is None:
        if asked:
            raise ArgumentError(
                f"eval.protocol = {asked!r}, but this checkpoint was trained without classes (data.classes = "
                '"none"): it predicts no classes to score; leave eval.protocol empty'
            )
        return None
    return asked or default_protocol(str(info["grouping"]))
