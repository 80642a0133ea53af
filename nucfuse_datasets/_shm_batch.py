"""Zero-copy batches from ``DataLoader`` workers: reusable slots in one shared-memory file per worker.

torch sends a tensor made in a worker by putting it in a fresh shared-memory block, passing the block's file
descriptor over a socket and mapping it in the main process, per batch. For cheap samples this costs more than
making the batch (page faults on every fresh page, a map and an unmap in both processes). Here each worker
keeps one file under ``/dev/shm`` with up to :data:`CAP` fixed-size slots that it fills again and again;
``collate`` writes the batch into a free slot, the batch pickles as ``(file, slot, layout)`` and the main
process, which maps each file once, returns a plain ``dict`` of tensors that are views of the slot.

Slot lifetime (two bytes per slot in the file's header page):

* ``W`` (written by the worker only): set when ``collate`` takes the slot, cleared when the worker's batch dies;
* ``S`` (sent): set by the worker when the batch is pickled for the main process, cleared by the main process
  when the last view of that batch dies.

A slot is free when both are 0. The tensors of a batch are views of one root array of the private subclass
:class:`_Root` (numpy does not collapse a chain of views across a change of array type, so every view and
every tensor made from one keeps the root alive); a ``weakref.finalize`` on the root clears the flag. When no
slot is free, a batch is pickled twice, the worker is not on Linux with a writable ``/dev/shm``, or anything
fails, the batch takes torch's standard path instead (a copy). ``NUCFUSE_SHM_BATCH=0`` turns the pool off.
"""

from __future__ import annotations

import contextlib
import gc
import glob
import math
import os
import sys
import threading
import weakref
from multiprocessing import util
from multiprocessing.reduction import ForkingPickler
from typing import Any

import numpy as np

CAP = 8  # slots per worker; a worker whose batches are all still referenced falls back to the standard path
_HEADER = 4096  # one page: bytes 2k (W) and 2k+1 (S) of slot k
_ALIGN = 64
_PAGE = 4096
_DIR = "/dev/shm"


class _Root(np.ndarray):
    """Marker subclass for the one array every view of a slot derives from (see the module docstring)."""


def _clear_flag(header: np.ndarray, index: int, owner: int) -> None:
    # Only the process that set the flag's meaning clears it: a forked child may drop inherited roots.
    if os.getpid() == owner:
        header[index] = 0


def _round_up(n: int, to: int) -> int:
    return -(-n // to) * to


def enabled() -> bool:
    """Whether batches made in this process go through a slot pool (a Linux ``DataLoader`` worker)."""
    if os.environ.get("NUCFUSE_SHM_BATCH", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    from torch.utils.data import get_worker_info

    return get_worker_info() is not None and os.access(_DIR, os.W_OK)


# ----------------------------------------------------------------------------------------------- worker side
class _Pool:
    """One shared-memory file of ``CAP`` slots of ``slot_bytes`` each, owned by one worker process."""

    _counter = 0

    def __init__(self, slot_bytes: int) -> None:
        import mmap

        _Pool._counter += 1
        self.pid = os.getpid()
        self.slot_bytes = slot_bytes
        # parent pid (for its clean-up of killed workers), worker pid, counter, and a random part: a reused pid
        # must never hit the main process's cached mapping of an older file of the same name.
        name = f"nucfuse-{os.getppid()}-{self.pid}-{_Pool._counter}-{os.urandom(6).hex()}"
        self.path = os.path.join(_DIR, name)
        size = _HEADER + CAP * slot_bytes
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        # At the worker's normal exit; the main process unlinks the name as soon as it has mapped the file.
        util.Finalize(None, _unlink, args=(self.path,), exitpriority=0)
        try:
            os.ftruncate(fd, size)
            os.posix_fallocate(fd, 0, _HEADER)
            self.mm = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            _unlink(self.path)
            raise
        self.fd = fd
        weakref.finalize(self, os.close, fd)
        self.buf = np.frombuffer(self.mm, np.uint8)
        self.header = self.buf[:_HEADER]
        self.used = 0

    def take(self) -> int | None:
        """Index of a free slot, now marked as written (``W``), or ``None`` when all ``CAP`` are in use."""
        flags = self.header[: 2 * self.used].tobytes()
        for k in range(self.used):
            if flags[2 * k] == 0 and flags[2 * k + 1] == 0:
                break
        else:
            if self.used >= CAP:
                return None
            k = self.used
            # Reserve the pages now: a full /dev/shm then fails here instead of killing the worker with SIGBUS.
            os.posix_fallocate(self.fd, _HEADER + k * self.slot_bytes, self.slot_bytes)
            self.used += 1
        self.header[2 * k] = 1
        return k


_POOL: _Pool | None = None
_BROKEN = False  # set after the pool failed once in this process: the standard path from then on


class Lease:
    """One slot taken for one batch: arrays to fill (``arrays[key]``), their tensors, then :meth:`wrap`."""

    def __init__(self, pool: _Pool, slot: int, specs: dict[str, tuple[tuple[int, ...], np.dtype[Any]]]) -> None:
        import torch

        self.path, self.pid, self.slot = pool.path, pool.pid, slot
        self.offset = _HEADER + slot * pool.slot_bytes
        self.header = pool.header
        root = pool.buf[self.offset : self.offset + pool.slot_bytes].view(_Root)
        weakref.finalize(root, _clear_flag, pool.header, 2 * slot, pool.pid)
        self.layout: dict[str, tuple[int, str, tuple[int, ...]]] = {}
        self.tensors: dict[str, Any] = {}
        start = 0
        for key, (shape, dtype) in specs.items():
            dtype = np.dtype(dtype)
            nbytes = math.prod(shape) * dtype.itemsize
            view = root[start : start + nbytes].view(dtype).reshape(shape)
            self.layout[key] = (start, dtype.str, tuple(shape))
            self.tensors[key] = torch.from_numpy(view)
            start = _round_up(start + nbytes, _ALIGN)
        self.nbytes = start
        self.classes: list[Any] | None = None
        self.class_parts: list[tuple[int, tuple[int, ...]] | None] = []

    def wrap(self, out: dict[str, Any]) -> PooledBatch:
        """The batch ``out`` (built from :attr:`tensors`) as a dict that pickles as a reference to the slot."""
        batch = PooledBatch(out)
        batch._lease = self
        return batch

    def reference(self, batch: PooledBatch) -> tuple[Any, ...] | None:
        """Arguments for :func:`_rebuild`, marking the slot as sent; ``None`` when it must be copied instead."""
        flag = 2 * self.slot + 1
        if os.getpid() != self.pid or self.header[flag] != 0:
            return None  # pickled in another process, or a second time
        entries: list[tuple[str, int, Any]] = []
        for key, value in batch.items():
            if key in self.layout and value is self.tensors[key]:
                entries.append((key, 1, self.layout[key]))
            elif key == "classes" and self.classes is not None and value is self.classes:
                if any(v is not c for v, c in zip(value, self._class_views, strict=True)):
                    return None
                entries.append((key, 2, (self.layout["classes"], self.class_parts)))
            elif _touches_slot(value):
                return None  # a slot view the layout does not describe
            else:
                entries.append((key, 0, value))
        self.header[flag] = 1
        return (self.path, self.pid, self.slot, self.offset, self.nbytes, entries)

    def set_classes(self, views: list[Any]) -> list[Any]:
        """Record the per-sample class lookups made as views of ``tensors["classes"]``; returns the list."""
        base = self.tensors["classes"].storage_offset()
        self._class_views = list(views)
        self.classes = views
        self.class_parts = [None if v is None else (v.storage_offset() - base, tuple(v.shape)) for v in views]
        return views


def _touches_slot(value: Any) -> bool:
    import torch

    if isinstance(value, torch.Tensor):
        return True  # conservative: any tensor not in the layout is sent by torch's own path, after a copy
    if isinstance(value, list | tuple):
        return any(_touches_slot(v) for v in value)
    return False


def lease(specs: dict[str, tuple[tuple[int, ...], np.dtype[Any]]]) -> Lease | None:
    """A slot for a batch of these arrays (``key -> (shape, dtype)``), or ``None`` for the standard path."""
    global _POOL, _BROKEN
    if _BROKEN or not enabled():
        return None
    try:
        need = sum(_round_up(math.prod(s) * np.dtype(d).itemsize, _ALIGN) for s, d in specs.values())
        pool = _POOL
        if pool is None or pool.pid != os.getpid():
            # The worker's first batch. The objects it inherited from the main process (torch, the dataset)
            # go to the garbage collector's permanent generation: otherwise the first full collection in the
            # worker writes to every one of them, copying each inherited page (~10 ms per batch for a whole
            # epoch here, and the worker's memory no longer shared), as Python's gc.freeze docs describe.
            gc.freeze()
        if pool is None or pool.pid != os.getpid() or pool.slot_bytes < need:
            # A new file (first batch, a forked copy, or a larger batch than the slots hold); room for the
            # class lookups to grow from batch to batch.
            pool = _POOL = _Pool(_round_up(need + max(need // 8, 1 << 16), _PAGE))
        slot = pool.take()
        return None if slot is None else Lease(pool, slot, specs)
    except Exception:
        _BROKEN = True
        return None


class PooledBatch(dict):  # type: ignore[type-arg]
    """A ``collate`` result whose tensors live in a worker's slot (see the module docstring).

    Ordinary pickling and copying give a plain ``dict``; only multiprocessing's pickler (the ``DataLoader``
    worker queue) sends a reference to the slot.
    """

    _lease: Lease

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (list(self.items()),))


def _plain_copy(value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, list):
        return [_plain_copy(v) for v in value]
    return value


def _reduce_pooled(batch: PooledBatch) -> tuple[Any, ...]:
    try:
        ref = batch._lease.reference(batch)
    except Exception:
        ref = None
    if ref is not None:
        return (_rebuild, ref)
    return (dict, ([(k, _plain_copy(v)) for k, v in batch.items()],))


ForkingPickler.register(PooledBatch, _reduce_pooled)


# ------------------------------------------------------------------------------------------------- main side
_MAPS: dict[str, tuple[int, np.ndarray]] = {}  # path -> (worker pid, bytes of the whole file)
_LOCK = threading.Lock()


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def prune() -> None:
    """Drop the mappings of files whose worker has exited, and remove files left by killed workers of this process.

    Runs whenever a new file is first mapped and before this process forks (new ``DataLoader`` workers).
    Batches still referenced keep their own mapping.
    """
    with _LOCK:
        for path, (pid, _) in list(_MAPS.items()):
            if not _alive(pid):
                del _MAPS[path]
    for path in glob.glob(os.path.join(_DIR, f"nucfuse-{os.getpid()}-*")):
        parts = os.path.basename(path).split("-")
        if len(parts) == 5 and parts[2].isdigit() and not _alive(int(parts[2])):
            _unlink(path)


def _mapping(path: str, pid: int) -> np.ndarray:
    hit = _MAPS.get(path)
    if hit is not None:
        return hit[1]
    import mmap

    prune()
    with _LOCK:
        hit = _MAPS.get(path)
        if hit is not None:
            return hit[1]
        fd = os.open(path, os.O_RDWR)
        try:
            buf = np.frombuffer(mmap.mmap(fd, os.fstat(fd).st_size), np.uint8)
        finally:
            os.close(fd)
        _unlink(path)  # the mapping stays valid; nothing is left behind once both sides let go
        _MAPS[path] = (pid, buf)
        return buf


def _rebuild(path: str, pid: int, slot: int, offset: int, nbytes: int, entries: list[Any]) -> dict[str, Any]:
    """The main process's side of :func:`_reduce_pooled`: a plain dict of tensors viewing the slot."""
    import torch

    buf = _mapping(path, pid)
    root = buf[offset : offset + nbytes].view(_Root)
    weakref.finalize(root, _clear_flag, buf[:_HEADER], 2 * slot + 1, os.getpid())

    def array(start: int, dtype: str, shape: tuple[int, ...]) -> Any:
        size = math.prod(shape) * np.dtype(dtype).itemsize
        return root[start : start + size].view(dtype).reshape(shape)

    out: dict[str, Any] = {}
    for key, kind, payload in entries:
        if kind == 1:
            out[key] = torch.from_numpy(array(*payload))
        elif kind == 2:
            flat = array(*payload[0])  # numpy views are cheaper to cut than tensors
            out[key] = [
                None if p is None else torch.from_numpy(flat[p[0] : p[0] + math.prod(p[1])].reshape(p[1]))
                for p in payload[1]
            ]
        else:
            out[key] = payload
    return out


def _after_fork_in_child() -> None:
    global _POOL, _LOCK, _BROKEN
    _POOL, _BROKEN, _LOCK = None, False, threading.Lock()
    _MAPS.clear()


def _before_fork() -> None:
    if _MAPS:
        with contextlib.suppress(Exception):
            prune()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
