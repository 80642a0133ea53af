"""The prepare ladder: from native files (or a download) to a prepared store, split by split.

A dataset module defines a subclass of :class:`NucleiDataset` with class attributes (name,
licence, citation, resources, splits, classes, expected counts, the paper's Table 1 row) and
one method, :meth:`NucleiDataset._convert`, that turns the native files into
:class:`~nucfuse_datasets.io.store.RawSample` objects. Everything else is shared:

1. a prepared store of the current converter version that holds the requested split(s) → load it;
2. native files of the splits still missing present (the extracted folder, or the archive: verified, then
   extracted safely into a temporary folder) → convert under a per-dataset lock, commit atomically (a new
   store is renamed into place; an existing store grows by the new split's files, its manifest replaced last);
3. ``download=True`` and the host allows it → fetch (verified), then 2;
4. otherwise :class:`~nucfuse_datasets.errors.DatasetNotFoundError` (or
   :class:`~nucfuse_datasets.errors.ManualDownloadRequired`) naming the exact files expected.

Preparation is per split where the sources are per split (:attr:`Resource.splits
<nucfuse_datasets.io.download.Resource.splits>`): ``PanNuke(root, split="fold1")`` needs only ``fold_1.zip``.
"""

from __future__ import annotations

import shutil
import uuid
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nucfuse_datasets.datasets._locate import SourceLocation
from nucfuse_datasets.datasets._parallel import Item, Job, check_workers, current_workers, write_samples
from nucfuse_datasets.datasets._sources import Sources
from nucfuse_datasets.datasets._spec import ExpectedCount
from nucfuse_datasets.errors import (
    ArgumentError,
    CountMismatchWarning,
    DownloadError,
    InvalidSourceError,
    NucFuseWarning,
    PreparedStoreError,
    StorageError,
)
from nucfuse_datasets.io.download import Resource, fetch, record_first_use, verify_file
from nucfuse_datasets.io.prepared import TMP_PREFIX, clean_temporaries
from nucfuse_datasets.io.store import (
    FileLock,
    PreparedStore,
    RawSample,
    StoreWriter,
)

__all__ = ["Preparation"]


class Preparation(SourceLocation):
    """The verify ladder and the conversion into the prepared store (a base of ``NucleiDataset``)."""

    # ------------------------------------------------------------------ the ladder
    def _store_splits(self, store: PreparedStore) -> tuple[str, ...]:
        return store.splits if store.splits is not None else tuple(self.splits)

    def _ordered(self, splits: Iterable[str]) -> tuple[str, ...]:
        chosen = set(splits)
        return tuple(s for s in self.splits if s in chosen) + tuple(sorted(chosen - set(self.splits)))

    def _plan(self, wanted: tuple[str, ...], force: bool) -> tuple[PreparedStore | None, tuple[str, ...]]:
        """The store to grow (``None``: write a new one) and the splits to convert."""
        existing = self._existing_store()
        if existing is None:
            return None, wanted
        have = self._store_splits(existing)
        if force:  # repair: rebuild every split the store holds, plus the wanted ones
            return None, self._ordered({*wanted, *have})
        return existing, self._ordered(set(wanted) - set(have))

    def prepare(
        self,
        download: bool = False,
        force: bool = False,
        splits: Iterable[str] | None = None,
        workers: int | None = None,
    ) -> PreparedStore:
        """Make sure a prepared store holding ``splits`` exists (the verify ladder) and return it.

        Args:
            download: allow downloading missing sources.
            force: convert again even if a complete store exists (repair after corruption); every split the
                store holds is rebuilt, so its sources must be present.
            splits: source splits to prepare (default: those this instance's ``split`` needs). A store that
                holds other splits grows by the missing ones without rewriting what is prepared.
            workers: processes that convert and write tiles (default 1, or what ``nucfuse prepare --workers``
                set; 0: one per CPU). The store is byte-identical for any number.

        Raises:
            StorageError: the disk filled up (or is read-only) while extracting or writing; nothing partial is left.
        """
        self._workers = current_workers() if workers is None else check_workers(workers)
        wanted = self._ordered(splits) if splits is not None else self.needed_splits()
        unknown = sorted(set(wanted) - set(self.splits))
        if unknown:
            raise ArgumentError(f"{self.name}: unknown split(s) {unknown}; valid splits: {', '.join(self.splits)}")
        if not force and (store := self._current_store(wanted)) is not None:
            self._clean_leftovers()
            return store
        _, todo = self._plan(wanted, force)
        located = self._locate_sources(download, todo)
        try:
            with FileLock(self.dataset_dir / ".lock"):
                if not force and (store := self._current_store(wanted)) is not None:
                    return store  # another process finished it while we waited
                base, todo = self._plan(wanted, force)  # ... or grew it by some of the splits
                clean_temporaries(self.dataset_dir)
                return self._build(located, todo, base)
        except OSError as exc:
            if not StorageError.matches(exc):
                raise
            where = f": {exc.filename}" if exc.filename else ""
            raise StorageError(
                f"{self.dataset_dir}: cannot write while preparing {self.name} ({exc.strerror or exc}{where}); "
                f"the partial output was removed. Free space under {self.root} (or pass another root) and run again."
            ) from exc

    def download_sources(self) -> dict[str, tuple[str, Path | None]]:
        """Fetch what preparing this instance's split needs and is not here yet; prepare nothing.

        The same path as ``download=True``: extracted folders and hand-placed files are recognised (and not
        fetched again), local archives are checked against their pinned hash, manual sources raise
        :class:`~nucfuse_datasets.errors.ManualDownloadRequired`, and a first-use hash is recorded only once the
        file has converted (never for a download that merely arrived). Behind ``nucfuse download``.

        Returns:
            resource key -> ``(state, path)``; state is ``"prepared"`` (nothing needed), ``"folder"`` (extracted
            folder present), ``"file"`` (archive present and verified), ``"downloaded"`` or ``"failed"`` (an
            optional resource that could not be fetched; preparing goes on without it).

        Example:
            >>> from nucfuse_datasets import get_dataset_class
            >>> ds = get_dataset_class("synthetic").deferred(getfixture("tmp_path"))
            >>> ds.download_sources()  # generated data: nothing to fetch
            {}
        """
        wanted = self.needed_splits()
        if self._current_store(wanted) is not None:
            return {r.key: ("prepared", self.store_path) for r in self.active_resources(wanted)}
        located = self._locate_sources(True, wanted)
        out: dict[str, tuple[str, Path | None]] = {}
        for res in self.active_resources(wanted):
            if res.key not in located:
                continue
            how, path = located[res.key]
            if how == "download":
                try:
                    path = fetch(res, self.dataset_dir, progress=self.progress is not False, record=False)
                except DownloadError:
                    if res.required:
                        raise
                    out[res.key] = ("failed", None)
                    continue
                how = "downloaded"
            elif how == "file":
                if path is None:
                    raise PreparedStoreError(f"{self.dataset_dir}: {res.filename!r} located without a path")
                verify_file(res, path, record=False)
            out[res.key] = (how, path)
        return out

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

    def _current_store(self, splits: Iterable[str] | None = None) -> PreparedStore | None:
        """The committed store of the current converter version holding ``splits`` (default: the needed ones)."""
        store = self._existing_store()
        if store is None:
            return None
        wanted = self.needed_splits() if splits is None else tuple(splits)
        return store if set(wanted) <= set(self._store_splits(store)) else None

    def _existing_store(self) -> PreparedStore | None:
        """The committed store of the current converter version, whatever splits it holds."""
        final = self.store_path
        if not PreparedStore.exists(final):
            return None
        try:
            store = PreparedStore(final)
        except PreparedStoreError:
            return None  # unreadable manifest: prepare again
        return store if store.converter_version == self.converter_version else None

    def _build(
        self,
        located: dict[str, tuple[str, Path | None]],
        splits: tuple[str, ...] | None = None,
        base: PreparedStore | None = None,
    ) -> PreparedStore:
        """Convert ``splits`` from the located sources into a new store, or into ``base`` (grown)."""
        ddir = self.dataset_dir
        splits = self.needed_splits() if splits is None else splits
        ddir.mkdir(parents=True, exist_ok=True)
        workdir = ddir / f"{TMP_PREFIX}extract-{uuid.uuid4().hex[:8]}"
        sources = Sources(self, workdir, splits)
        provenance: dict[str, dict[str, Any]] = {}
        first_use: list[tuple[Resource, Path, str, str]] = []  # hashes recorded once the store is committed
        try:
            for res in self.active_resources(splits):
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
                if path is None:
                    raise PreparedStoreError(f"{ddir}: {res.filename!r} located without a path")
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
                splits=splits,
                base=base,
            )
            try:
                self._skipped: dict[str, int] = {}
                items = self._progress(self._convert(sources), desc=f"Preparing {self.name}")
                workers = getattr(self, "_workers", 1)
                # in order, skip counts included; the converter's module is imported once by the worker server
                write_samples(writer, items, splits, workers, preload=[type(self).__module__], on_skip=self._skip)
                if not writer.samples:
                    raise self._no_samples(sources, splits)
                counts = writer.counts()
                prepared = {*splits, *(self._store_splits(base) if base is not None else ())}
                skipped = dict(base.manifest.get("skipped") or {}) if base is not None else {}
                for reason, n in self._skipped.items():
                    skipped[reason] = skipped.get(reason, 0) + n
                store = writer.commit(
                    sources={**(base.manifest.get("sources") or {} if base is not None else {}), **provenance},
                    skipped=skipped,
                    count_check=self.check_counts(counts, self._expected_for(prepared)),
                )
            except BaseException:
                writer.abort()
                raise
            for res, path, digest, how in first_use:
                record_first_use(res, path, digest, origin=f"{how}, converted into {store.path.name}")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return store

    def _expected_for(self, prepared: Iterable[str]) -> tuple[ExpectedCount, ...]:
        """The published counts that apply to the prepared splits (``"all"`` only once every split is there)."""
        have = set(prepared)
        complete = have >= set(self.splits)
        return tuple(e for e in self.expected_counts if e.split in have or (e.split == "all" and complete))

    def _no_samples(self, sources: Sources, splits: tuple[str, ...]) -> InvalidSourceError:
        searched = ", ".join(str(p) for p in sources.searched()) or str(self.dataset_dir)
        which = "" if set(splits) >= set(self.splits) else f" of split {', '.join(splits)}"
        return InvalidSourceError(
            f"{self.dataset_dir}: the native files{which} produced no samples; searched {searched}. The folders are "
            f"there but hold no tiles in the expected layout (empty, or extracted elsewhere): see `nucfuse info "
            f"{self.name}` for the layout, and put the files there (or delete the folders and download again)."
        )

    def _progress(self, it: Iterable[Any], desc: str) -> Iterator[Any]:
        """The converter's items, counting tiles (RawSamples and Jobs, not markers) on a progress bar."""
        from tqdm.auto import tqdm

        disable = None if self.progress is None else not self.progress
        with tqdm(desc=desc, unit="tile", disable=disable, leave=False) as bar:
            for item in it:
                yield item
                if isinstance(item, RawSample | Job):
                    bar.update()

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

    def _convert(self, sources: Sources) -> Iterator[Item]:
        """Yield one :class:`~nucfuse_datasets.datasets._parallel.Job` per native tile (implemented by each dataset).

        A Job is a module-level function and its picklable arguments that read that one tile's files and return
        its :class:`RawSample` (or ``None`` for a tile skipped on purpose, after
        :func:`~nucfuse_datasets.datasets._parallel.report_skip`), so ``prepare(workers=N)`` converts tiles in N
        processes. Listing, pairing and checks across tiles stay here, in the parent; what the tiles share (a
        lookup table) travels in the arguments. A finished RawSample is accepted too (converted serially), and a
        :class:`~nucfuse_datasets.datasets._parallel.Skipped` marker counts an item skipped while listing.

        ``sources`` maps resource keys to folders; archives are extracted on first access and may be released
        with ``sources.release(key)`` once converted: yield
        :data:`~nucfuse_datasets.datasets._parallel.SETTLE` first, so no pending job still reads them.
        """
        raise NotImplementedError
