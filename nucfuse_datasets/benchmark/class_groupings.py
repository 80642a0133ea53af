"""Which classes a class-aware score counts: each dataset's classes, mapped to the classes its literature evaluates.

A :class:`ClassGrouping` maps the class ids a dataset stores (``Sample.classes``, named by ``class_names``) to the
evaluation classes ``1..K`` of a published protocol; an instance whose class maps to 0 is unclassified (it counts
for detection and binary PQ, and for no class). The groupings shipped:

==============  ========  ======================================================================================
grouping        dataset   evaluation classes (source)
==============  ========  ======================================================================================
``pannuke``     PanNuke   Neoplastic, Inflammatory, Connective, Dead, Epithelial (the masks' channels 0-4; the
                          order PanNuke-metrics ``run.py`` prints)
``consep-4``    CoNSeP    other, inflammatory, epithelial (3+4), spindle-shaped (5+6+7): HoVer-Net's merge
                          (Graham et al. 2019, §4.2; ``vqdang/hover_net`` ``compute_stats.py``'s commented CoNSeP
                          conversion)
``consep-7``    CoNSeP    the 7 release classes (CoNSeP ``README.txt``)
``monusac``     MoNuSAC   Epithelial, Lymphocyte, Neutrophil, Macrophage (the organisers' XML class names)
``puma-10``     PUMA      the 10 ``nuclei_*`` classes of the GeoJSON (challenge track 2)
``synthetic``   synthetic epithelial, lymphocyte (the generator's classes; for tests and demos)
``puma-3``      PUMA      nuclei_lymphocyte, nuclei_tumor, nuclei_other: challenge track 1's names and ids (the
                          organisers' track-1 baseline, ``tueimage/PUMA-challenge-baseline-track1`` ``src/``),
                          with plasma cells counted as lymphocytes (tumour-infiltrating lymphocytes). UNCONFIRMED:
                          the organisers' material names the three classes but does not list the mapping;
                          ``puma-3-strict`` keeps plasma cells in "other".
==============  ========  ======================================================================================

Example:
    >>> import numpy as np
    >>> g = get_grouping("consep-4")
    >>> g.names, g.n_classes
    (('other', 'inflammatory', 'epithelial', 'spindle-shaped'), 4)
    >>> from nucfuse_datasets.datasets.consep import ORIGINAL_CLASS_NAMES
    >>> g.map(np.array([0, 1, 3, 4, 7]), ORIGINAL_CLASS_NAMES).tolist()
    [0, 1, 3, 3, 4]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nucfuse_datasets.datasets import consep, monusac, pannuke, puma, synthetic
from nucfuse_datasets.errors import ArgumentError, InvalidSampleError

__all__ = ["DEFAULT_GROUPING", "GROUPINGS", "ClassGrouping", "get_grouping", "grouping_for"]

_PANNUKE = pannuke.CLASS_NAMES
_CONSEP_7 = consep.ORIGINAL_CLASS_NAMES
_CONSEP_4 = consep.MERGED_CLASS_NAMES
_MONUSAC = monusac.MoNuSAC.class_names
_SYNTHETIC = synthetic.CLASS_NAMES
_PUMA_10 = ("background", *puma.NUCLEUS_CLASSES)


def _identity(names: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(range(len(names)))


@dataclass(frozen=True)
class ClassGrouping:
    """A map from a dataset's class ids to the evaluation classes ``1..K`` of a protocol.

    Attributes:
        name: the grouping's name (``"consep-4"``).
        dataset: the dataset it applies to.
        names: evaluation class names, class ``k`` is ``names[k - 1]``.
        sources: accepted dataset class lists (``class_names`` with ``"background"`` first) -> the evaluation id of
            each dataset class id (index = dataset id; 0 = unclassified).
        source: where the grouping comes from.
        note: caveats (UNCONFIRMED choices).
    """

    name: str
    dataset: str
    names: tuple[str, ...]
    sources: dict[tuple[str, ...], tuple[int, ...]] = field(hash=False)
    source: str
    note: str = ""

    @property
    def n_classes(self) -> int:
        """Number of evaluation classes ``K``."""
        return len(self.names)

    def lookup(self, class_names: Sequence[str] | None) -> np.ndarray:
        """The ``dataset id -> evaluation id`` array for a dataset whose classes are ``class_names``.

        Raises:
            InvalidSampleError: the dataset's classes are not ones this grouping maps.
        """
        key = tuple(class_names or ())
        if key not in self.sources:
            known = "; ".join(", ".join(k[1:]) for k in self.sources)
            raise InvalidSampleError(
                f"class grouping {self.name!r} maps the {self.dataset} classes ({known}), not {list(key[1:])}; "
                f"pick a grouping for these classes (nucfuse_datasets.benchmark.class_groupings.GROUPINGS)"
            )
        return np.asarray(self.sources[key], dtype=np.int64)

    def map(self, classes: Any, class_names: Sequence[str] | None) -> np.ndarray:
        """Map a Sample's class lookup (``classes[id]`` = dataset class of instance ``id``) to evaluation ids."""
        lut = self.lookup(class_names)
        arr = np.asarray(classes)
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= lut.size):
            raise InvalidSampleError(
                f"class grouping {self.name!r}: class ids must be in 0..{lut.size - 1}, got {int(arr.min())}.."
                f"{int(arr.max())}"
            )
        return lut[arr.astype(np.int64, copy=False)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description (for evaluation reports)."""
        return {"name": self.name, "dataset": self.dataset, "classes": list(self.names), "source": self.source}


_TRACK1_SOURCE = (
    "PUMA challenge track 1 class names and ids (tueimage/PUMA-challenge-baseline-track1@dccfc84 src/constants.py "
    "and src/post_process.py: 1 nuclei_lymphocyte, 2 nuclei_tumor, 3 nuclei_other)"
)
_TRACK1_NOTE = (
    "UNCONFIRMED: the organisers' track-1 material names the three classes but not which of the ten go where; "
    "'puma-3' counts plasma cells as lymphocytes (tumour-infiltrating lymphocytes), 'puma-3-strict' as other"
)


def _puma3(plasma: int) -> tuple[int, ...]:
    # ids in the organisers' track-1 order (CLASS_LABELS_PUMA in src/constants.py): lymphocyte 1, tumor 2, other 3
    out = [0] * len(_PUMA_10)
    for i, n in enumerate(_PUMA_10[1:], start=1):
        out[i] = 1 if n == "nuclei_lymphocyte" else 2 if n == "nuclei_tumor" else 3
    out[_PUMA_10.index("nuclei_plasma_cell")] = plasma
    return tuple(out)


GROUPINGS: dict[str, ClassGrouping] = {
    g.name: g
    for g in (
        ClassGrouping(
            "pannuke",
            "pannuke",
            _PANNUKE[1:],
            {_PANNUKE: _identity(_PANNUKE)},
            "PanNuke masks.npy channels 0-4 (TissueImageAnalytics/PanNuke-metrics run.py)",
        ),
        ClassGrouping(
            "consep-4",
            "consep",
            _CONSEP_4[1:],
            {_CONSEP_7: tuple(consep.MERGE[k] for k in range(len(_CONSEP_7))), _CONSEP_4: _identity(_CONSEP_4)},
            "HoVer-Net (Graham et al. 2019) CoNSeP evaluation: 3+4 epithelial, 5+6+7 spindle-shaped "
            "(vqdang/hover_net compute_stats.py)",
        ),
        ClassGrouping(
            "consep-7", "consep", _CONSEP_7[1:], {_CONSEP_7: _identity(_CONSEP_7)}, "CoNSeP README.txt release classes"
        ),
        ClassGrouping("monusac", "monusac", _MONUSAC[1:], {_MONUSAC: _identity(_MONUSAC)}, "MoNuSAC XML class names"),
        ClassGrouping(
            "puma-10", "puma", _PUMA_10[1:], {_PUMA_10: _identity(_PUMA_10)}, "PUMA GeoJSON classes (track 2)"
        ),
        ClassGrouping(
            "synthetic",
            "synthetic",
            _SYNTHETIC[1:],
            {_SYNTHETIC: _identity(_SYNTHETIC)},
            "the synthetic generator's two classes (nucfuse_datasets.datasets.synthetic)",
        ),
        ClassGrouping(
            "puma-3",
            "puma",
            ("nuclei_lymphocyte", "nuclei_tumor", "nuclei_other"),
            {_PUMA_10: _puma3(1)},
            _TRACK1_SOURCE,
            _TRACK1_NOTE,
        ),
        ClassGrouping(
            "puma-3-strict",
            "puma",
            ("nuclei_lymphocyte", "nuclei_tumor", "nuclei_other"),
            {_PUMA_10: _puma3(3)},
            _TRACK1_SOURCE,
            _TRACK1_NOTE,
        ),
    )
}

#: The grouping each class-bearing dataset is scored with by default.
DEFAULT_GROUPING: dict[str, str] = {
    "pannuke": "pannuke",
    "consep": "consep-4",
    "monusac": "monusac",
    "puma": "puma-10",
    "synthetic": "synthetic",
}


def get_grouping(name: str | ClassGrouping) -> ClassGrouping:
    """The grouping called ``name`` (or ``name`` itself when it is one).

    Raises:
        ArgumentError: no such grouping; the message lists them.
    """
    if isinstance(name, ClassGrouping):
        return name
    if name not in GROUPINGS:
        raise ArgumentError(f"unknown class grouping {name!r}; known: {', '.join(GROUPINGS)}")
    return GROUPINGS[name]


def grouping_for(
    dataset: str, class_names: Sequence[str] | None, choice: str | ClassGrouping | None = None
) -> ClassGrouping | None:
    """The grouping to score ``dataset`` with: ``choice``, else the dataset's default; ``None`` without classes.

    Raises:
        ArgumentError: ``choice`` names an unknown grouping, or one for another dataset's classes.

    Example:
        >>> grouping_for("consep", _CONSEP_7).name, grouping_for("tnbc", None)
        ('consep-4', None)
    """
    if choice is None:
        if not class_names or dataset not in DEFAULT_GROUPING:
            return None
        choice = DEFAULT_GROUPING[dataset]
    grouping = get_grouping(choice)
    if tuple(class_names or ()) not in grouping.sources:
        raise ArgumentError(
            f"{dataset}: class grouping {grouping.name!r} is for {grouping.dataset}'s classes; this dataset's classes "
            f"are {list(class_names or ())[1:] or 'none'}"
        )
    return grouping
