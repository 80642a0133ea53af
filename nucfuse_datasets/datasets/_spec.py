"""What a dataset module declares, and what follows from it without touching any file.

:class:`DatasetSpec` holds the class attributes every dataset sets (name, licence, citation, resources and the
splits each feeds, splits, classes, published counts, the paper's Table 1 row, declared options), validates the
declared options, derives the prepared store's name and path, and describes the dataset (:meth:`DatasetSpec.info`).
The prepare ladder (:mod:`nucfuse_datasets.datasets._prepare`) and the read path
(:mod:`nucfuse_datasets.datasets._base`) build on it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from nucfuse_datasets.datasets._sources import find_marker
from nucfuse_datasets.errors import (
    ArgumentError,
    PreparedStoreError,
)
from nucfuse_datasets.io.config import PathLike, resolve_root
from nucfuse_datasets.io.download import Resource
from nucfuse_datasets.io.store import (
    PreparedStore,
)

__all__ = ["DatasetSpec", "ExpectedCount", "Option", "PaperStats"]


@dataclass(frozen=True)
class ExpectedCount:
    """A published count the converted data is checked against.

    Attributes:
        split: source split (or ``"all"``).
        tiles: expected number of tiles, or ``None`` if unpublished.
        nuclei: expected number of nuclei, or ``None``.
        source: who publishes it ("paper Table 1", "challenge page", ...).
        tolerance: relative tolerance on nuclei (rasterisers and versions differ); tiles are exact.
    """

    split: str
    tiles: int | None
    nuclei: int | None
    source: str
    tolerance: float = 0.0


@dataclass(frozen=True)
class Option:
    """A constructor option a dataset declares in :attr:`NucleiDataset.declared_options`; the base validates it.

    The chosen value becomes an instance attribute of the same name, and part of
    :attr:`NucleiDataset.options` (so of the prepared store's name and manifest) when it differs from ``default``.
    An option named ``source`` also selects the resource whose key it names.

    Attributes:
        name: the keyword (``annotator``, ``source``, ``classes``).
        default: the value when the keyword is not given.
        choices: the valid values (the error lists them).
        doc: one line for ``nucfuse info`` and the docs.
        check: for an open-ended option (no ``choices``): takes the given value and returns the value to use, or
            raises :class:`~nucfuse_datasets.errors.ArgumentError` (the synthetic dataset's ``n_tiles=``).

    Example:
        >>> from nucfuse_datasets import get_dataset_class
        >>> [(o.name, o.default, o.choices) for o in get_dataset_class("consep").declared_options]
        [('classes', 'original', ('original', 'merged'))]
    """

    name: str
    default: Any
    choices: tuple[Any, ...] = ()
    doc: str = ""
    check: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class PaperStats:
    """One row of the NucFuseRank paper's Table 1."""

    tiles: int
    nuclei: int
    organs: str
    tile_size: str
    density: float
    train_patches: int


class DatasetSpec:
    """The declarative part of a dataset class: identity, sources, structure and options (no I/O)."""

    # ---- identity and documentation (overridden by every dataset)
    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    license: ClassVar[str] = "UNCONFIRMED"
    citation: ClassVar[str] = ""
    homepage: ClassVar[str] = ""
    # ---- sources and structure
    resources: ClassVar[tuple[Resource, ...]] = ()
    splits: ClassVar[tuple[str, ...]] = ("all",)
    #: source split NucFuse-test draws from ("test", "val"), or None to sample from the whole dataset
    test_split: ClassVar[str | None] = None
    #: class names (``"background"`` first), or None; an option may change them (set in :meth:`_configure`)
    class_names: tuple[str, ...] | None = None
    magnification: ClassVar[float | None] = None
    #: published counts; an option may change them (set in :meth:`_configure`)
    expected_counts: tuple[ExpectedCount, ...] = ()
    #: constructor options beyond the common ones, validated by the base (see :class:`Option`)
    declared_options: ClassVar[tuple[Option, ...]] = ()
    paper: ClassVar[PaperStats | None] = None
    manual_instructions: ClassVar[str] = ""
    converter_version: ClassVar[int] = 1
    #: folder levels searched for a resource's markers beyond the default (copies that add a folder level)
    content_depth: ClassVar[int] = 0

    # ---- set by the constructor
    root: Path
    split: str
    progress: bool | None

    # ------------------------------------------------------------------ options and paths
    def _set_options(self, given: Mapping[str, Any]) -> None:
        """Validate ``given`` against :attr:`declared_options`, record each value, then :meth:`_configure`.

        Raises:
            ArgumentError: an undeclared keyword, or a value outside an option's choices; the message lists them.
        """
        declared = {o.name: o for o in self.declared_options}
        unknown = sorted(set(given) - set(declared))
        if unknown:
            valid = ", ".join(declared) or "none"
            raise ArgumentError(f"{self.name}: unknown option(s) {', '.join(unknown)}; valid options: {valid}")
        for opt in declared.values():
            value = given.get(opt.name, opt.default)
            if opt.check is None:
                self._choose(opt.name, value, opt.choices, opt.default)
            else:  # open-ended: the option's own check, against its checked default
                self.__dict__.setdefault("_chosen", {})[opt.name] = (opt.check(value), opt.check(opt.default))
                setattr(self, opt.name, self.__dict__["_chosen"][opt.name][0])
        self._configure()

    def _configure(self) -> None:
        """Set what depends on the chosen options (class names, published counts); the default sets nothing."""

    def _choose(self, name: str, value: Any, choices: Iterable[Any], default: Any) -> Any:
        """Validate and record a constructor option that changes the output (:meth:`_set_options` calls it).

        The option becomes an attribute, and part of :attr:`options` when it differs from ``default``. An option
        named ``source`` also selects the resource whose key it names (see :meth:`active_resources`).

        Raises:
            ArgumentError: ``value`` is not one of ``choices``; the message lists them.
        """
        valid = list(choices)
        if value not in valid:
            raise ArgumentError(f"{self.name}: unknown {name} {value!r}; valid: {', '.join(map(repr, valid))}")
        self.__dict__.setdefault("_chosen", {})[name] = (value, default)
        setattr(self, name, value)
        return value

    @property
    def options(self) -> dict[str, Any]:
        """Dataset-specific constructor options that change the converted output.

        Keys are constructor keyword names, so ``cls(root, **options)`` rebuilds the same store;
        they are recorded in the manifest and give the store its name. Options recorded with :meth:`_choose`
        appear here when they differ from their default.
        """
        chosen = self.__dict__.get("_chosen", {})
        return {k: v for k, (v, default) in chosen.items() if v != default}

    @property
    def dataset_dir(self) -> Path:
        """``<root>/<name>``: native files and prepared stores of this dataset."""
        return self.root / self.name

    @property
    def store_name(self) -> str:
        """``prepared`` or ``prepared-<options>`` when options differ from the defaults."""
        opts = self.options
        if not opts:
            return "prepared"
        tag = "-".join(f"{k}={v}" for k, v in sorted(opts.items()))
        if len(tag) <= 48 and all(ch.isalnum() or ch in "._-=" for ch in tag):
            return "prepared-" + tag
        digest = hashlib.sha1(json.dumps(opts, sort_keys=True).encode()).hexdigest()[:12]
        return f"prepared-{digest}"

    @property
    def store_path(self) -> Path:
        """Folder of the prepared store used by this instance."""
        return self.dataset_dir / self.store_name

    @classmethod
    def _content_root(cls, res: Resource, base: Path, max_depth: int) -> Path | None:
        """Folder under ``base`` holding ``res``'s whole content (default: the one with every one of its markers)."""
        markers = res.markers()
        return find_marker(base, markers, max_depth=max_depth + cls.content_depth) if markers else None

    @classmethod
    def _part_root(cls, res: Resource, base: Path, max_depth: int, splits: Iterable[str]) -> Path | None:
        """Folder under ``base`` holding what ``res`` gives ``splits``.

        Its whole content, or, for a resource with one part per split (:attr:`Resource.split_markers`), a folder
        holding only the parts of ``splits`` (an extracted CoNSeP with ``Train/`` alone serves ``split="train"``).
        """
        whole = cls._content_root(res, base, max_depth)
        if whole is not None or not res.split_markers:
            return whole
        markers = res.markers(list(splits))
        return find_marker(base, markers, max_depth=max_depth + cls.content_depth) if markers else None

    @classmethod
    def _source_state(cls, res: Resource, ddir: Path) -> str:
        """What ``info`` says of ``res`` under ``ddir``: whole folder, archive, the parts of some splits, missing."""
        if cls._content_root(res, ddir, max_depth=2) is not None:
            return "extracted folder present"
        if (ddir / res.filename).is_file():
            return "archive present"
        parts = [s for s, _ in res.split_markers if cls._part_root(res, ddir, 2, (s,)) is not None]
        return f"extracted folder present (split {', '.join(parts)} only)" if parts else "missing"

    @classmethod
    def info(cls, root: PathLike | None = None) -> dict[str, Any]:
        """Everything a person needs to know about the dataset, and what is present under ``root``."""
        ddir = resolve_root(root) / cls.name
        status: dict[str, Any] = {"dataset_dir": str(ddir), "prepared": [], "sources": {}}
        status["prepared_splits"] = {}
        if ddir.is_dir():
            status["prepared"] = sorted(
                p.name for p in ddir.iterdir() if p.name.startswith("prepared") and PreparedStore.exists(p)
            )
            for store_name in status["prepared"]:
                try:
                    kept = PreparedStore(ddir / store_name).splits
                except PreparedStoreError:
                    kept = None
                status["prepared_splits"][store_name] = list(kept if kept is not None else cls.splits)
        for res in cls.resources:
            status["sources"][res.key] = cls._source_state(res, ddir)
        return {
            "name": cls.name,
            "title": cls.title,
            "description": cls.description.strip(),
            "license": cls.license,
            "citation": cls.citation.strip(),
            "homepage": cls.homepage,
            "splits": list(cls.splits),
            "test_split": cls.test_split,
            "class_names": list(cls.class_names) if cls.class_names else None,
            "magnification": cls.magnification,
            "options": [
                {"name": o.name, "default": o.default, "choices": list(o.choices), "doc": o.doc}
                for o in cls.declared_options
            ],
            "auto_download": all(r.downloadable for r in cls.resources if r.required) and bool(cls.resources),
            "resources": [
                {
                    "key": r.key,
                    "filename": r.filename,
                    "urls": list(r.urls),
                    "sha256": r.sha256,
                    "md5": r.md5,
                    "size": r.size,
                    "hash_source": r.hash_source,
                    "manual": not r.downloadable,
                    "page": r.page,
                    "marker": r.marker,
                    "required": r.required,
                    "note": r.note,
                }
                for r in cls.resources
            ],
            "manual_instructions": cls.manual_instructions.strip(),
            "expected_counts": [asdict(e) for e in cls.expected_counts],
            "paper_table1": asdict(cls.paper) if cls.paper else None,
            "local": status,
        }
