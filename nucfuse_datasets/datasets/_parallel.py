"""Parallel preparation: convert and write tiles in worker processes, record them in order (private).

A converter (``NucleiDataset._convert``) yields, per native tile, either a finished
:class:`~nucfuse_datasets.io.store.RawSample` or a :class:`Job`: a picklable module-level function and its
arguments that produce the RawSample (reading, decoding and rasterising the tile). With ``workers > 1`` the
jobs run in a process pool together with :func:`~nucfuse_datasets.io.store.write_sample` (validation,
relabelling, the ``.tif``/``.npy`` writes and their sha256), so only the cheap bookkeeping stays in the
parent. Results are recorded in submission order, so the manifest — sample order, files, hashes — and every
file are byte-identical for any number of workers. At most ``2 × workers`` tiles are in flight, so memory
does not grow with the dataset.

Example:
    >>> with prepare_workers(2):
    ...     current_workers()
    2
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nucfuse_datasets.errors import ArgumentError, InvalidSourceError
from nucfuse_datasets.io.store import RawSample, StoreWriter, safe_id, write_sample

__all__ = ["Job", "check_workers", "current_workers", "prepare_workers", "write_samples"]

_WORKERS: contextvars.ContextVar[int] = contextvars.ContextVar("nucfuse_prepare_workers", default=1)


@dataclass(frozen=True)
class Job:
    """A deferred conversion of one tile: ``fn(*args)`` returns its :class:`RawSample`.

    ``fn`` must be a module-level function (picklable by reference) and ``args`` picklable (paths, numbers).
    """

    fn: Callable[..., RawSample]
    args: tuple[Any, ...] = ()

    def run(self) -> RawSample:
        """Convert the tile."""
        return self.fn(*self.args)


def check_workers(workers: Any) -> int:
    """Validate a ``workers`` value (a positive integer; 0 means one per CPU)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ArgumentError(f"workers must be a positive integer (0: one per CPU); got {workers!r}")
    return workers or (os.cpu_count() or 1)


def current_workers() -> int:
    """The number of preparation processes set by :func:`prepare_workers` (default 1)."""
    return _WORKERS.get()


@contextlib.contextmanager
def prepare_workers(workers: int) -> Iterator[None]:
    """Prepare with ``workers`` processes inside the block (used by ``nucfuse prepare --workers``)."""
    token = _WORKERS.set(check_workers(workers))
    try:
        yield
    finally:
        _WORKERS.reset(token)


def _where(raw: RawSample, dataset: str) -> str:
    original = raw.meta.get("original_file")
    return f"{dataset}/{safe_id(raw.sample_id)}" + (f" ({original})" if original else "")


def _convert_and_write(
    item: RawSample | Job, folder: Path, dataset: str, class_names: tuple[str, ...] | None, splits: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, str], str, str | None] | None:
    """Worker side: convert one tile (if deferred) and write its files; ``None`` for a tile of another split."""
    raw = item.run() if isinstance(item, Job) else item
    if raw.split not in splits:
        return None
    entry, files = write_sample(folder, raw, dataset=dataset, class_names=class_names)
    return entry, files, _where(raw, dataset), raw.meta.get("original_file")


def _preload(items: Iterable[Any]) -> list[str]:
    """Modules of the converter functions (known when ``items`` is a list; a generator gives none)."""
    if isinstance(items, list):
        return sorted({item.fn.__module__ for item in items if isinstance(item, Job)})
    return []


def write_samples(
    writer: StoreWriter,
    items: Iterable[RawSample | Job],
    splits: tuple[str, ...],
    workers: int = 1,
    preload: Iterable[str] = (),
) -> None:
    """Convert and write every item of ``splits`` into ``writer``, in order, with ``workers`` processes.

    ``preload``: modules (the converter's) the worker server imports once. Workers start through a fork
    server (spawn where there is none), never by forking the caller: as with any ``multiprocessing`` code,
    a script that prepares with workers needs the ``if __name__ == "__main__":`` guard.

    Raises:
        InvalidSourceError: a tile is malformed, or two tiles share a sample id (the first error in tile
            order; pending work is cancelled, and the caller aborts the writer).
    """
    if workers <= 1:
        for item in items:
            raw = item.run() if isinstance(item, Job) else item
            if raw.split in splits:  # converters skip other splits themselves; this is the guard
                writer.add(raw)
        return
    pending: collections.deque[Future[Any]] = collections.deque()
    # never fork the parent (it may hold threads: progress bars, torch); forkserver starts clean workers fast
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":  # the server imports the converters once; each worker forks from it ready
        context.set_forkserver_preload([__name__, *preload, *_preload(items)])
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    try:

        def settle(future: Future[Any]) -> None:
            done = future.result()
            if done is None:
                return
            entry, files, where, original = done
            sid = entry["id"]
            if sid in writer._ids:  # the same message as StoreWriter.add (the duplicate's files are discarded)
                raise InvalidSourceError(f"{where}: duplicate sample id {sid!r}, already given to {writer._ids[sid]}")
            writer.record(entry, files, where=original)

        for item in items:
            pending.append(
                pool.submit(_convert_and_write, item, writer.tmp, writer.dataset, writer.class_names, splits)
            )
            while len(pending) >= 2 * workers:
                settle(pending.popleft())
        while pending:
            settle(pending.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
