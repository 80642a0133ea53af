"""The native sources as a converter sees them, and the helpers that find native files in a folder."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from nucfuse_datasets.errors import (
    InvalidSourceError,
)
from nucfuse_datasets.io.archive import extract_archive
from nucfuse_datasets.io.download import Resource
from nucfuse_datasets.io.prepared import TMP_PREFIX

if TYPE_CHECKING:  # pragma: no cover
    from nucfuse_datasets.datasets._spec import DatasetSpec

__all__ = ["EXTRACT_MAX_RATIO", "EXTRACT_MIN_BYTES", "Sources", "files_by_stem", "find_marker"]

#: Extraction bound against zip bombs: an archive may expand to ``EXTRACT_MAX_RATIO`` times its size, and always
#: to ``EXTRACT_MIN_BYTES`` (the largest real source, a PanNuke fold, expands about tenfold to some 13 GB).
EXTRACT_MAX_RATIO = 100
EXTRACT_MIN_BYTES = 32 << 30


class Sources(Mapping[str, Path]):
    """The converter's view of the native sources: resource key -> folder (or file) with its content.

    Archives are verified before conversion starts but extracted safely only when the converter first reads
    their key, into a temporary folder; :meth:`release` deletes an extraction the converter no longer needs, so
    a dataset made of several large archives (PanNuke's folds) never holds more than one extracted at a time.
    """

    def __init__(self, dataset: DatasetSpec, workdir: Path, splits: Iterable[str] | None = None) -> None:
        self._dataset = dataset
        self._workdir = workdir
        self._paths: dict[str, Path] = {}
        self._archives: dict[str, tuple[Resource, Path]] = {}
        #: the source splits to convert now (a converter skips the others without reading their files)
        self.splits: tuple[str, ...] = tuple(splits) if splits is not None else tuple(dataset.splits)

    def wants(self, split: str) -> bool:
        """True when ``split`` is to be converted now."""
        return split in self.splits

    def searched(self) -> list[Path]:
        """Every folder or archive the converter was given (for "no samples" messages)."""
        return [*self._paths.values(), *(a for k, (_, a) in self._archives.items() if k not in self._paths)]

    def add_folder(self, key: str, path: Path) -> None:
        """A source already present as a folder or plain file."""
        self._paths[key] = path

    def add_archive(self, res: Resource, archive: Path) -> None:
        """A verified archive, extracted on first access."""
        self._archives[res.key] = (res, archive)

    def __getitem__(self, key: str) -> Path:
        if key in self._paths:
            return self._paths[key]
        if key not in self._archives:
            raise KeyError(key)
        res, archive = self._archives[key]
        target = self._workdir / key
        shutil.rmtree(target, ignore_errors=True)
        limit = max(EXTRACT_MIN_BYTES, EXTRACT_MAX_RATIO * archive.stat().st_size)
        extract_archive(archive, target, max_bytes=limit)
        base = self._dataset._content_root(res, target, max_depth=3)
        if base is None:
            raise InvalidSourceError(
                f"{archive}: the archive does not contain {res.marker!r}; it is not the expected {res.filename!r}"
            )
        self._paths[key] = base
        return base

    def release(self, key: str) -> None:
        """Delete the extraction of ``key`` (a later access extracts it again); folders are left alone."""
        if key in self._archives and key in self._paths:
            del self._paths[key]
            shutil.rmtree(self._workdir / key, ignore_errors=True)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self._paths, *self._archives]))

    def __len__(self) -> int:
        return len(set(self._paths) | set(self._archives))

    def __contains__(self, key: object) -> bool:
        return key in self._paths or key in self._archives


def find_marker(base: Path, marker: str | tuple[str, ...], max_depth: int = 2) -> Path | None:
    """Find the folder under ``base`` (itself or up to ``max_depth`` levels down) that contains ``marker``.

    ``marker`` may be several paths, which the folder must all contain. Prepared stores and temporary folders are
    skipped.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()); (d / "x" / "A" / "B").mkdir(parents=True)
        >>> find_marker(d, "A/B") == d / "x", find_marker(d, ("A/B", "C"))
        (True, None)
    """
    markers = (marker,) if isinstance(marker, str) else tuple(marker)
    if not base.is_dir() or not markers:
        return None
    level = [base]
    for _ in range(max_depth + 1):
        nxt: list[Path] = []
        for folder in level:
            if all((folder / m).exists() for m in markers):
                return folder
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir())
            except OSError:
                continue
            nxt.extend(c for c in children if not c.name.startswith((TMP_PREFIX, "prepared")) and c.name != "__MACOSX")
        level = nxt
    return None


def files_by_stem(folder: Path, suffixes: tuple[str, ...], what: str = "tile") -> dict[str, Path]:
    """The files of ``folder`` whose lower-cased suffix is in ``suffixes``, keyed by stem (hidden files skipped).

    Raises:
        InvalidSourceError: two files share a stem (``x.tif`` beside ``x.tiff`` or ``x.TIF``): they would both be
            ``what`` ``x``, and silently keeping one would lose data.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "a.TIF").write_bytes(b""); _ = (d / "b.xml").write_bytes(b"")
        >>> sorted(files_by_stem(d, (".tif", ".tiff")))
        ['a']
    """
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in suffixes or p.name.startswith(".") or not p.is_file():
            continue
        if p.stem in out:
            raise InvalidSourceError(
                f"{p}: {out[p.stem].name!r} and {p.name!r} are both there and would both be {what} {p.stem!r}; "
                "remove one of them"
            )
        out[p.stem] = p
    return out
