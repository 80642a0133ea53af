"""Parallel preparation: convert and write tiles in worker processes, record them in order (private).

A converter (``NucleiDataset._convert``) yields, per native tile, a :class:`Job`: a picklable module-level
function and its arguments that read, decode and rasterise that one tile into a
:class:`~nucfuse_datasets.io.store.RawSample` (or return ``None`` for a tile it skips on purpose, after
:func:`report_skip`). It may also yield a finished RawSample, a :class:`Skipped` marker (a native item
skipped while listing) or :data:`SETTLE` (wait until every tile so far is written, e.g. before the
converter deletes the extracted files those tiles read). With ``workers > 1`` the jobs run in a process
pool together with :func:`~nucfuse_datasets.io.store.write_sample` (validation, relabelling, the
``.tif``/``.npy`` writes and their sha256), so only the listing and the bookkeeping stay in the parent.
Results — tiles and skip counts — are recorded in submission order, so the manifest (sample order, files,
hashes, ``skipped``) and every file are byte-identical for any number of workers, and the error raised is
the one of the first bad tile in that order. At most ``2 × workers`` tiles are in flight, so memory does
not grow with the dataset.

Example:
    >>> with prepare_workers(2):
    ...     current_workers()
    2
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import ctypes
import multiprocessing
import os
import pkgutil
import platform
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nucfuse_datasets.errors import ArgumentError, InvalidSourceError
from nucfuse_datasets.io.store import RawSample, StoreWriter, safe_id, write_sample

__all__ = [
    "SETTLE",
    "Item",
    "Job",
    "Settle",
    "Skipped",
    "check_workers",
    "current_workers",
    "prepare_workers",
    "report_skip",
    "write_samples",
]

_WORKERS: contextvars.ContextVar[int] = contextvars.ContextVar("nucfuse_prepare_workers", default=1)
_SKIPS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("nucfuse_prepare_skips", default=None)


@dataclass(frozen=True)
class Job:
    """A deferred conversion of one tile: ``fn(*args)`` returns its :class:`RawSample` (``None``: skipped).

    ``fn`` must be a module-level function (picklable by reference) and ``args`` picklable and small (paths,
    numbers, strings, small tuples or dicts): the function reads the tile's files itself.
    """

    fn: Callable[..., RawSample | None]
    args: tuple[Any, ...] = ()

    def run(self) -> RawSample | None:
        """Convert the tile."""
        return self.fn(*self.args)


@dataclass(frozen=True)
class Skipped:
    """A native item the converter skips while listing (counted under ``reason`` in the manifest, in order)."""

    reason: str


class Settle:
    """Wait until every tile submitted so far is converted and written (before sources are released)."""

    def __repr__(self) -> str:
        return "SETTLE"


#: Yielded by a converter before it releases (deletes) the extracted files that earlier jobs read.
SETTLE = Settle()

#: What a converter yields.
Item = RawSample | Job | Skipped | Settle


def report_skip(reason: str) -> None:
    """Count an item that a :class:`Job` function skips on purpose (reported in the manifest's ``skipped``).

    Outside a preparation (a job function called directly) it does nothing.

    Example:
        >>> report_skip("region of an unknown class")  # not preparing: ignored
    """
    sink = _SKIPS.get()
    if sink is not None:
        sink.append(reason)


def _run(item: RawSample | Job) -> tuple[RawSample | None, list[str]]:
    """Convert one item, collecting the skips its function reports."""
    if not isinstance(item, Job):
        return item, []
    sink: list[str] = []
    token = _SKIPS.set(sink)
    try:
        return item.run(), sink
    finally:
        _SKIPS.reset(token)


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


_Written = tuple[dict[str, Any], dict[str, str], str, "str | None"]


def _convert_and_write(
    item: RawSample | Job, folder: Path, dataset: str, class_names: tuple[str, ...] | None, splits: tuple[str, ...]
) -> tuple[list[str], _Written | None]:
    """Worker side: convert one tile (if deferred) and write its files, with the skips reported on the way.

    The written part is ``None`` for a tile that the job skipped or that belongs to another split.
    """
    raw, skips = _run(item)
    if raw is None or raw.split not in splits:
        return skips, None
    entry, files = write_sample(folder, raw, dataset=dataset, class_names=class_names)
    return skips, (entry, files, _where(raw, dataset), raw.meta.get("original_file"))


#: Readers and writers the converters import lazily (an import error is ignored by the fork server).
_READERS = (
    "PIL.Image",
    "PIL.PngImagePlugin",
    "PIL.TiffImagePlugin",
    "tifffile",
    "imagecodecs",
    "scipy.io",
    "xml.parsers.expat",
)


#: glibc ``mallopt`` parameters (``malloc.h``) and the values the workers use.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_FREE, _MMAP_ABOVE = 128 << 20, 32 << 20


def _init_worker() -> None:
    """Let a worker keep one tile's freed buffers for the next tile (glibc; elsewhere nothing changes).

    In a fresh worker, glibc hands the large blocks of each converted tile back to the system and the next tile
    faults them in again (about 7,600 page faults, +25 % CPU for a 1000² CoNSeP tile). Arrays up to 32 MB now come
    from the heap, and up to 128 MB of free heap stay with the worker: bounded, whatever the dataset's size.
    """
    if platform.libc_ver()[0] != "glibc":
        return
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_FREE)
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_ABOVE)
    except (OSError, AttributeError):  # no such symbol: leave the allocator as it is
        pass


def _preload(items: Iterable[Any]) -> list[str]:
    """What the worker server imports once, so that no worker of any pool imports it again.

    Every dataset module (a server started by one dataset also serves the next one in this process), the
    readers, and the modules of the converter functions (known when ``items`` is a list; a generator gives none).
    """
    package = Path(__file__).parent
    datasets = sorted(f"{__package__}.{m.name}" for m in pkgutil.iter_modules([str(package)]) if m.name[0] != "_")
    jobs = sorted({item.fn.__module__ for item in items if isinstance(item, Job)}) if isinstance(items, list) else []
    return [*datasets, *_READERS, *jobs]


def write_samples(
    writer: StoreWriter,
    items: Iterable[Item],
    splits: tuple[str, ...],
    workers: int = 1,
    preload: Iterable[str] = (),
    on_skip: Callable[[str], None] | None = None,
) -> None:
    """Convert and write every item of ``splits`` into ``writer``, in order, with ``workers`` processes.

    ``preload``: modules (the converter's) the worker server imports once, besides every dataset module and the
    readers. ``on_skip``: called with the reason of every skipped item (:class:`Skipped` markers and
    :func:`report_skip` calls of the jobs), in item order.
    Workers start through a fork server (spawn where there is none), never by forking the caller: as with any
    ``multiprocessing`` code, a script that prepares with workers needs the ``if __name__ == "__main__":``
    guard.

    Raises:
        InvalidSourceError: a tile is malformed, or two tiles share a sample id (the first error in tile
            order, also when the converter itself fails on a later item; pending work is cancelled, and the
            caller aborts the writer).
    """
    skip = on_skip if on_skip is not None else (lambda reason: None)
    if workers <= 1:
        for item in items:
            if isinstance(item, Skipped):
                skip(item.reason)
                continue
            if isinstance(item, Settle):
                continue
            raw, reasons = _run(item)
            for reason in reasons:
                skip(reason)
            if raw is not None and raw.split in splits:  # converters skip other splits themselves; the guard
                writer.add(raw)
        return
    pending: collections.deque[Future[Any] | tuple[list[str], None]] = collections.deque()
    # never fork the parent (it may hold threads: progress bars, torch); forkserver starts clean workers fast
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":  # the server imports the converters once; each worker forks from it ready
        from multiprocessing import forkserver

        context.set_forkserver_preload([__name__, *preload, *_preload(items)])
        forkserver.ensure_running()  # its imports (about a second, once) overlap the extraction and the listing
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker)
    finished = False
    try:

        def settle(done: Future[Any] | tuple[list[str], None]) -> None:
            reasons, written = done.result() if isinstance(done, Future) else done
            for reason in reasons:
                skip(reason)
            if written is None:
                return
            entry, files, where, original = written
            sid = entry["id"]
            if sid in writer._ids:  # the same message as StoreWriter.add (the duplicate's files are discarded)
                raise InvalidSourceError(f"{where}: duplicate sample id {sid!r}, already given to {writer._ids[sid]}")
            writer.record(entry, files, where=original)

        source = iter(items)
        while True:
            try:
                item = next(source)
            except StopIteration:
                break
            except BaseException:  # the converter failed on a later item: an earlier tile's error comes first
                while pending:
                    settle(pending.popleft())
                raise
            if isinstance(item, Skipped):
                pending.append(([item.reason], None))
                continue
            if isinstance(item, Settle):
                while pending:
                    settle(pending.popleft())
                continue
            pending.append(
                pool.submit(_convert_and_write, item, writer.tmp, writer.dataset, writer.class_names, splits)
            )
            while len(pending) >= 2 * workers:
                settle(pending.popleft())
        while pending:
            settle(pending.popleft())
        finished = True
    finally:
        # after an error, wait until no worker writes any more (the caller then deletes the folder); after
        # success every tile is recorded and the idle workers exit in the background
        pool.shutdown(wait=not finished, cancel_futures=True)
