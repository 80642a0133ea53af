"""The shared base of every dataset: verify ladder, conversion into the prepared store, loading.

A dataset module defines a subclass of :class:`NucleiDataset` with class attributes (name,
licence, citation, resources, splits, classes, expected counts, the paper's Table 1 row) and
one method, :meth:`NucleiDataset._convert`, that turns the native files into
:class:`~nucfuse_datasets.store.RawSample` objects. Everything else is shared:

1. a complete prepared store of the current converter version → load it;
2. native files present (the extracted folder, or the archive: verified, then extracted safely
   into a temporary folder) → convert under a per-dataset lock, commit atomically;
3. ``download=True`` and the host allows it → fetch (verified), then 2;
4. otherwise :class:`~nucfuse_datasets.errors.DatasetNotFoundError` (or
   :class:`~nucfuse_datasets.errors.ManualDownloadRequired`) naming the exact files expected.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from torch.utils.data import Dataset

from nucfuse_datasets._archive import extract_archive
from nucfuse_datasets._config import PathLike, resolve_root
from nucfuse_datasets._download import Resource, fetch, record_first_use, verify_file
from nucfuse_datasets._io import load_npy
from nucfuse_datasets.errors import (
    ArgumentError,
    CountMismatchWarning,
    DatasetNotFoundError,
    DownloadError,
    InvalidSourceError,
    ManualDownloadRequired,
    NucFuseWarning,
    PreparedStoreError,
    StorageError,
)
from nucfuse_datasets.schema import Sample, SampleMeta
from nucfuse_datasets.store import (
    TMP_PREFIX,
    FileLock,
    PreparedStore,
    RawSample,
    StoreWriter,
    clean_temporaries,
)

__all__ = ["ExpectedCount", "NucleiDataset", "PaperStats", "Sources", "files_by_stem", "find_marker"]

Transform = Callable[[Sample], Any]

#: Extraction bound against zip bombs: an archive may expand to ``EXTRACT_MAX_RATIO`` times its size, and always
#: to ``EXTRACT_MIN_BYTES`` (the largest real source, a PanNuke fold, expands about tenfold to some 13 GB).
EXTRACT_MAX_RATIO = 100
EXTRACT_MIN_BYTES = 32 << 30


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
class PaperStats:
    """One row of the NucFuseRank paper's Table 1."""

    tiles: int
    nuclei: int
    organs: str
    tile_size: str
    density: float
    train_patches: int


class Sources(Mapping[str, Path]):
    """The converter's view of the native sources: resource key -> folder (or file) with its content.

    Archives are verified before conversion starts but extracted safely only when the converter first reads
    their key, into a temporary folder; :meth:`release` deletes an extraction the converter no longer needs, so
    a dataset made of several large archives (PanNuke's folds) never holds more than one extracted at a time.
    """

    def __init__(self, dataset: NucleiDataset, workdir: Path) -> None:
        self._dataset = dataset
        self._workdir = workdir
        self._paths: dict[str, Path] = {}
        self._archives: dict[str, tuple[Resource, Path]] = {}

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


def find_marker(base: Path, marker: str, max_depth: int = 2) -> Path | None:
    """Find the folder under ``base`` (itself or up to ``max_depth`` levels down) that contains ``marker``.

    Prepared stores and temporary folders are skipped.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()); (d / "x" / "A" / "B").mkdir(parents=True)
        >>> find_marker(d, "A/B") == d / "x"
        True
    """
    if not base.is_dir():
        return None
    level = [base]
    for _ in range(max_depth + 1):
        nxt: list[Path] = []
        for folder in level:
            if (folder / marker).exists():
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


class NucleiDataset(Dataset[Any]):
    """Base class of every dataset: a ``torch.utils.data.Dataset`` of :class:`~nucfuse_datasets.schema.Sample`.

    Args:
        root: data root; ``None`` resolves ``$NUCFUSE_DATA_DIR``, then ``pooch.os_cache("nucfuse")``.
            The dataset lives in ``<root>/<name>/`` (native files) and ``<root>/<name>/prepared/``.
        split: a value of ``splits`` or ``"all"``.
        download: download missing sources when the host allows it.
        transforms: callable applied to each Sample in ``__getitem__`` (a class, so it pickles).
        progress: show progress bars (``None`` = only on a terminal).

    Raises:
        DatasetNotFoundError: no prepared data, no native files and ``download=False``.
        ManualDownloadRequired: a source must be placed by hand; the message says how.
        ChecksumError: a local or downloaded archive has the wrong hash.
        InvalidSourceError: a native file is malformed.
    """

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
    class_names: ClassVar[tuple[str, ...] | None] = None
    magnification: ClassVar[float | None] = None
    expected_counts: ClassVar[tuple[ExpectedCount, ...]] = ()
    paper: ClassVar[PaperStats | None] = None
    manual_instructions: ClassVar[str] = ""
    converter_version: ClassVar[int] = 1

    def __init__(
        self,
        root: PathLike | None = None,
        split: str = "all",
        download: bool = False,
        transforms: Transform | None = None,
        *,
        progress: bool | None = None,
    ) -> None:
        valid = (*self.splits, "all") if "all" not in self.splits else self.splits
        if split not in valid:
            raise ArgumentError(f"{self.name}: unknown split {split!r}; valid splits: {', '.join(valid)}")
        self.root = resolve_root(root)
        self.split = split
        self.transforms = transforms
        self.progress = progress
        store = self.prepare(download=download)
        self._store_path = store.path
        entries = [s for s in store.samples if split == "all" or s["split"] == split]
        self._ids = np.array([e["id"] for e in entries], dtype=str)
        self._splits = np.array([e["split"] for e in entries], dtype=str)
        self._meta = np.array([json.dumps(e["meta"]) for e in entries], dtype=str)
        self._shapes = np.array([(e["height"], e["width"]) for e in entries], dtype=np.int64).reshape(-1, 2)
        self._n_instances = np.array([e["n_instances"] for e in entries], dtype=np.int64)
        self._has_classes = np.array(["classes" in e["files"] for e in entries], dtype=bool)
        self._has_ignore = np.array(["ignore" in e["files"] for e in entries], dtype=bool)

    # ------------------------------------------------------------------ options and paths
    def _choose(self, name: str, value: Any, choices: Iterable[Any], default: Any) -> Any:
        """Validate and record a constructor option that changes the output (call before ``super().__init__``).

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

    # ------------------------------------------------------------------ the ladder
    def prepare(self, download: bool = False, force: bool = False) -> PreparedStore:
        """Make sure a complete prepared store exists (the verify ladder) and return it.

        Args:
            download: allow downloading missing sources.
            force: convert again even if a complete store exists (repair after corruption).

        Raises:
            StorageError: the disk filled up (or is read-only) while extracting or writing; nothing partial is left.
        """
        if not force and (store := self._current_store()) is not None:
            self._clean_leftovers()
            return store
        located = self._locate_sources(download)
        try:
            with FileLock(self.dataset_dir / ".lock"):
                if not force and (store := self._current_store()) is not None:
                    return store  # another process finished it while we waited
                clean_temporaries(self.dataset_dir)
                return self._build(located)
        except OSError as exc:
            if not StorageError.matches(exc):
                raise
            where = f": {exc.filename}" if exc.filename else ""
            raise StorageError(
                f"{self.dataset_dir}: cannot write while preparing {self.name} ({exc.strerror or exc}{where}); "
                f"the partial output was removed. Free space under {self.root} (or pass another root) and run again."
            ) from exc

    def _clean_leftovers(self) -> None:
        """Remove what an interrupted preparation left (a killed repair), if no other process is preparing now."""
        ddir = self.dataset_dir
        if not any(p.name.startswith(TMP_PREFIX) for p in ddir.iterdir()):
            return
        lock = FileLock(ddir / ".lock", timeout=0)
        try:
            lock.acquire()
        except OSError:  # LockTimeoutError: another process is preparing (it cleans up itself); or a read-only root
            return
        try:
            clean_temporaries(ddir)
        finally:
            lock.release()

    def _current_store(self) -> PreparedStore | None:
        """The committed store of the current converter version, if any."""
        final = self.store_path
        if not PreparedStore.exists(final):
            return None
        try:
            store = PreparedStore(final)
        except PreparedStoreError:
            return None  # unreadable manifest: prepare again
        return store if store.converter_version == self.converter_version else None

    def _locate_sources(self, download: bool) -> dict[str, tuple[str, Path | None]]:
        """Decide, per resource, where its content comes from, without writing anything."""
        ddir = self.dataset_dir
        located: dict[str, tuple[str, Path | None]] = {}
        missing: list[Resource] = []
        for res in self.active_resources():
            base = self._content_root(res, ddir, max_depth=2)
            if base is not None:
                located[res.key] = ("folder", base)
                continue
            path = ddir / res.filename
            if path.is_file():
                located[res.key] = ("file", path)
                continue
            if download and res.downloadable:
                located[res.key] = ("download", None)
                continue
            if res.required:
                missing.append(res)
        if missing:
            raise self._not_found(missing, download)
        return located

    def active_resources(self) -> tuple[Resource, ...]:
        """Resources this instance needs: all of them, or only the one a ``source`` option names."""
        if "source" in self.__dict__.get("_chosen", {}):
            return tuple(r for r in self.resources if r.key == self.source)  # type: ignore[attr-defined]
        return self.resources

    @classmethod
    def _content_root(cls, res: Resource, base: Path, max_depth: int) -> Path | None:
        """Folder under ``base`` holding ``res``'s content (default: the one containing ``res.marker``)."""
        return find_marker(base, res.marker, max_depth=max_depth) if res.marker else None

    def _not_found(self, missing: list[Resource], download: bool) -> DatasetNotFoundError:
        ddir = self.dataset_dir
        lines = [f"{self.title or self.name} not found in {ddir}."]
        lines.append("Expected there (the archive as downloaded, or the folder it unpacks to):")
        for res in missing:
            alt = f" — or the extracted folder containing {res.marker!r}" if res.marker else ""
            lines.append(f"  - {res.describe()}{alt}")
        manual = [r for r in missing if not r.downloadable]
        if manual:
            if self.manual_instructions:
                lines.append("How to get it:\n" + self.manual_instructions.strip())
            lines.append(f"Licence: {self.license}.")
            return ManualDownloadRequired("\n".join(lines))
        if not download:
            lines.append(
                f"Pass download=True (or run `nucfuse download {self.name}`) to fetch "
                f"{'them' if len(missing) > 1 else 'it'}. Licence: {self.license}."
            )
        return DatasetNotFoundError("\n".join(lines))

    def _build(self, located: dict[str, tuple[str, Path | None]]) -> PreparedStore:
        ddir = self.dataset_dir
        ddir.mkdir(parents=True, exist_ok=True)
        workdir = ddir / f"{TMP_PREFIX}extract-{uuid.uuid4().hex[:8]}"
        sources = Sources(self, workdir)
        provenance: dict[str, dict[str, Any]] = {}
        first_use: list[tuple[Resource, Path, str, str]] = []  # hashes recorded once the store is committed
        try:
            for res in self.active_resources():
                if res.key not in located:
                    continue
                how, path = located[res.key]
                if how == "download":
                    try:
                        path = fetch(res, ddir, progress=self.progress is not False, record=False)
                    except DownloadError as exc:
                        if res.required:
                            raise
                        warnings.warn(
                            NucFuseWarning(f"{self.name}: optional {res.filename!r} not downloaded ({exc}); going on"),
                            stacklevel=3,
                        )
                        continue
                    how = "downloaded"
                assert path is not None
                entry: dict[str, Any] = {"filename": res.filename, "origin": how}
                if how in ("file", "downloaded"):
                    entry["sha256"] = verify_file(res, path, record=False)
                    first_use.append((res, path, entry["sha256"], how))
                    if res.kind == "archive":
                        sources.add_archive(res, path)  # extracted when the converter first asks for it
                        provenance[res.key] = entry
                        continue
                sources.add_folder(res.key, path)
                provenance[res.key] = entry
            writer = StoreWriter(
                ddir,
                dataset=self.name,
                converter_version=self.converter_version,
                store_name=self.store_name,
                class_names=self.class_names,
                variant=self.options,
            )
            try:
                self._skipped: dict[str, int] = {}
                for raw in self._progress(self._convert(sources), desc=f"Preparing {self.name}"):
                    writer.add(raw)
                counts = writer.counts()
                store = writer.commit(
                    sources=provenance,
                    skipped=self._skipped,
                    count_check=self.check_counts(counts, self.expected_counts),
                )
            except BaseException:
                writer.abort()
                raise
            for res, path, digest, how in first_use:
                record_first_use(res, path, digest, origin=f"{how}, converted into {store.path.name}")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return store

    def _progress(self, it: Iterable[RawSample], desc: str) -> Iterator[RawSample]:
        from tqdm.auto import tqdm

        disable = None if self.progress is None else not self.progress
        yield from tqdm(it, desc=desc, unit="tile", disable=disable, leave=False)

    def _skip(self, reason: str) -> None:
        """Count a native item that the converter skips on purpose (reported in the manifest)."""
        self._skipped[reason] = self._skipped.get(reason, 0) + 1

    @classmethod
    def check_counts(
        cls, counts: dict[str, dict[str, int]], expected: tuple[ExpectedCount, ...] | None = None
    ) -> list[dict[str, Any]]:
        """Compare converted counts with the published ones; warn about and return the differences.

        ``expected`` defaults to the class's ``expected_counts``; preparing passes the instance's, so a dataset
        whose counts depend on an option (CryoNuSeg's annotator) sets the instance attribute.
        """
        diffs: list[dict[str, Any]] = []
        for exp in cls.expected_counts if expected is None else expected:
            got = counts.get(exp.split, {"tiles": 0, "nuclei": 0})
            for key, want, tol in (("tiles", exp.tiles, 0.0), ("nuclei", exp.nuclei, exp.tolerance)):
                if want is None:
                    continue
                if abs(got[key] - want) > tol * want:
                    diffs.append(
                        {
                            "split": exp.split,
                            "what": key,
                            "expected": want,
                            "got": got[key],
                            "source": exp.source,
                        }
                    )
        if diffs:
            text = "; ".join(f"{d['split']} {d['what']}: {d['got']} vs {d['expected']} ({d['source']})" for d in diffs)
            warnings.warn(
                CountMismatchWarning(f"{cls.name}: converted counts differ from the published ones: {text}"),
                stacklevel=3,
            )
        return diffs

    def _convert(self, sources: Sources) -> Iterator[RawSample]:
        """Yield one :class:`RawSample` per native tile (implemented by each dataset).

        ``sources`` maps resource keys to folders; archives are extracted on first access and may be released
        with ``sources.release(key)`` once converted.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ Dataset protocol
    def __len__(self) -> int:
        return int(self._ids.size)

    def _meta_for(self, idx: int) -> SampleMeta:
        return SampleMeta(
            dataset=self.name,
            sample_id=str(self._ids[idx]),
            split=str(self._splits[idx]),
            **json.loads(self._meta[idx]),
        )

    def load_sample(self, idx: int) -> Sample:
        """The untransformed Sample at ``idx``."""
        import tifffile

        if not -len(self) <= idx < len(self):
            raise IndexError(f"{self.name}: index {idx} out of range for {len(self)} samples")
        idx = int(idx) % len(self)
        sid = str(self._ids[idx])
        base = self._store_path
        try:
            image = tifffile.imread(base / "images" / f"{sid}.tif")
            instances = load_npy(base / "instances" / f"{sid}.npy")
            classes = load_npy(base / "classes" / f"{sid}.npy") if self._has_classes[idx] else None
            ignore = load_npy(base / "ignore" / f"{sid}.npy") if self._has_ignore[idx] else None
        except (OSError, InvalidSourceError) as exc:
            raise PreparedStoreError(
                f"{base}: cannot read sample {sid!r} ({exc}); run `nucfuse verify {self.name} --repair`"
            ) from None
        return Sample(
            image=image,
            instances=instances,
            classes=classes,
            class_names=self.class_names if classes is not None else None,
            ignore=ignore,
            meta=self._meta_for(idx),
        )

    def load_region(self, idx: int, y0: int, y1: int, x0: int, x1: int) -> Sample:
        """The untransformed Sample cropped to rows ``y0:y1`` and columns ``x0:x1`` of tile ``idx``.

        Reads only the needed rows (memory-mapped TIFF and ``.npy``), so cutting patches from large tiles stays
        cheap. Instance ids are *not* renumbered; ``classes`` is the tile's full lookup.
        """
        import tifffile

        idx = int(idx) % len(self)
        sid = str(self._ids[idx])
        base = self._store_path
        try:
            image = np.array(tifffile.memmap(base / "images" / f"{sid}.tif", mode="r")[y0:y1, x0:x1])
            instances = np.array(load_npy(base / "instances" / f"{sid}.npy", mmap_mode="r")[y0:y1, x0:x1])
            classes = load_npy(base / "classes" / f"{sid}.npy") if self._has_classes[idx] else None
            ignore = (
                np.array(load_npy(base / "ignore" / f"{sid}.npy", mmap_mode="r")[y0:y1, x0:x1])
                if self._has_ignore[idx]
                else None
            )
        except (OSError, ValueError, InvalidSourceError) as exc:
            raise PreparedStoreError(
                f"{base}: cannot read sample {sid!r} ({exc}); run `nucfuse verify {self.name} --repair`"
            ) from None
        return Sample(
            image=image,
            instances=instances,
            classes=classes,
            class_names=self.class_names if classes is not None else None,
            ignore=ignore,
            meta=self._meta_for(idx),
        )

    def __getitem__(self, idx: int) -> Any:
        sample = self.load_sample(idx)
        return self.transforms(sample) if self.transforms is not None else sample

    # ------------------------------------------------------------------ cheap index access
    @property
    def sample_ids(self) -> list[str]:
        """Sample ids in index order."""
        return [str(s) for s in self._ids]

    def meta(self, idx: int) -> SampleMeta:
        """Metadata of sample ``idx`` without reading any pixels."""
        return self._meta_for(idx)

    def tile_shape(self, idx: int) -> tuple[int, int]:
        """``(H, W)`` of sample ``idx`` without reading any pixels."""
        h, w = self._shapes[idx]
        return int(h), int(w)

    def n_instances(self, idx: int) -> int:
        """Number of nuclei in sample ``idx`` (from the manifest)."""
        return int(self._n_instances[idx])

    def index_of(self, sample_id: str) -> int:
        """Index of a sample id."""
        hits = np.flatnonzero(self._ids == sample_id)
        if hits.size == 0:
            raise KeyError(f"{self.name}: no sample {sample_id!r} in split {self.split!r}")
        return int(hits[0])

    def plot(self, idx: int, prediction: np.ndarray | None = None, **kwargs: Any) -> Any:
        """Plot sample ``idx`` with instance contours (and a prediction panel); needs the ``plot`` extra."""
        from nucfuse_datasets.viz import plot_sample

        return plot_sample(self.load_sample(idx), prediction=prediction, **kwargs)

    # ------------------------------------------------------------------ description
    @classmethod
    def info(cls, root: PathLike | None = None) -> dict[str, Any]:
        """Everything a person needs to know about the dataset, and what is present under ``root``."""
        ddir = resolve_root(root) / cls.name
        status: dict[str, Any] = {"dataset_dir": str(ddir), "prepared": [], "sources": {}}
        if ddir.is_dir():
            status["prepared"] = sorted(
                p.name for p in ddir.iterdir() if p.name.startswith("prepared") and PreparedStore.exists(p)
            )
        for res in cls.resources:
            if cls._content_root(res, ddir, max_depth=2) is not None:
                status["sources"][res.key] = "extracted folder present"
            elif (ddir / res.filename).is_file():
                status["sources"][res.key] = "archive present"
            else:
                status["sources"][res.key] = "missing"
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

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
            f"n={len(self)}, store={self.store_name!r})"
        )
