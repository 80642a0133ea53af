"""The prepared store: converted samples on disk, written atomically and verified by a manifest.

Layout of ``<root>/<dataset>/prepared[-<variant>]/``::

    manifest.json          dataset, converter version, samples, per-file sha256, counts
    images/<id>.tif        H×W×3 uint8 RGB (uncompressed TIFF)
    instances/<id>.npy     H×W int32 instance map, 0 = background, 1..N
    classes/<id>.npy       int32 lookup, classes[i] = class id of instance i (when the source has classes)
    ignore/<id>.npy        H×W bool mask of ambiguous regions (when the source has them)

A store is written into a temporary sibling folder and renamed into place only when complete,
with ``manifest.json`` written last: a folder called ``prepared`` with a manifest is always
complete. A per-dataset lock file serialises preparation across processes.

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> base = pathlib.Path(tempfile.mkdtemp())
    >>> w = StoreWriter(base, dataset="demo", converter_version=1)
    >>> _ = w.add(RawSample("a", "train", np.zeros((4, 4, 3), np.uint8), np.eye(4, dtype=np.int32)))
    >>> store = w.commit()
    >>> store.samples[0]["n_instances"], store.counts["train"]["nuclei"]
    (1, 1)
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nucfuse_datasets._labelmap import check_ids, relabel
from nucfuse_datasets._version import __version__
from nucfuse_datasets.errors import (
    InvalidSourceError,
    LockTimeoutError,
    PreparedStoreError,
)
from nucfuse_datasets.io.files import atomic_write_json, save_npy, sha256_file, write_tif
from nucfuse_datasets.io.prepared import (  # noqa: F401 - re-exported
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    TMP_PREFIX,
    PreparedStore,
    _fsync_dir,
    clean_temporaries,
)

__all__ = [
    "MANIFEST",
    "FileLock",
    "PreparedStore",
    "RawSample",
    "StoreWriter",
    "relabel_sequential",
    "safe_id",
    "write_sample",
]

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_id(text: str) -> str:
    """A file-system-safe sample id: runs of other characters become ``_``.

    Example:
        >>> safe_id("human bladder/01 (a).png")
        'human_bladder_01_a_.png'
    """
    out = _SAFE.sub("_", text).strip("._")
    if not out:
        raise InvalidSourceError(f"cannot derive a sample id from {text!r}")
    return out


def relabel_sequential(instances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber ids to 1..N in ascending order of the original id (0 stays background).

    Returns:
        ``(int32 map, original_ids)`` where ``original_ids[k - 1]`` is the old id of new id ``k``.

    Example:
        >>> import numpy as np
        >>> m, old = relabel_sequential(np.array([[0, 7], [7, 3]]))
        >>> m.tolist(), old.tolist()
        ([[0, 2], [2, 1]], [3, 7])
    """
    arr = check_ids(np.asarray(instances), "instance map", InvalidSourceError)
    dense = relabel(arr)
    if dense.n > np.iinfo(np.int32).max:  # pragma: no cover - impossible for real tiles
        raise InvalidSourceError("too many instances for int32")
    return dense.labels.astype(np.int32, copy=False), dense.ids.astype(np.int64)


@dataclass
class RawSample:
    """What a converter yields for one tile; :class:`StoreWriter` validates and normalises it.

    ``instances`` may hold any non-negative integer ids (renumbered 1..N on write, ascending).
    ``classes`` maps *original* instance ids to class ids (a dict, or a lookup array indexed by
    original id). ``meta`` holds :class:`~nucfuse_datasets.schema.SampleMeta` fields other than
    dataset, sample_id and split.
    """

    sample_id: str
    split: str
    image: np.ndarray
    instances: np.ndarray
    classes: Mapping[int, int] | np.ndarray | None = None
    ignore: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class FileLock:
    """An exclusive inter-process lock on a file (``fcntl.flock``), with a timeout.

    Example:
        >>> import tempfile, pathlib
        >>> with FileLock(pathlib.Path(tempfile.mkdtemp()) / ".lock", timeout=1):
        ...     pass
    """

    def __init__(self, path: Path, timeout: float = 3600.0, poll: float = 0.2) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.poll = poll
        self._fd: int | None = None

    def acquire(self) -> None:
        """Block until the lock is held (or raise :class:`LockTimeoutError`)."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd = fd
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockTimeoutError(
                        f"{self.path}: another process has been preparing this dataset for over "
                        f"{self.timeout:.0f} s; wait for it or remove the lock file if no process is running"
                    ) from None
                time.sleep(self.poll)

    def release(self) -> None:
        """Release the lock (the lock file itself stays)."""
        import fcntl

        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _classes_lookup(classes: Mapping[int, int] | np.ndarray, old_ids: np.ndarray, where: str) -> np.ndarray:
    lookup = np.zeros(old_ids.size + 1, np.int32)
    if isinstance(classes, np.ndarray):
        arr = np.asarray(classes)
        if old_ids.size and int(old_ids.max()) >= arr.size:
            raise InvalidSourceError(f"{where}: class lookup has {arr.size} entries, ids go up to {old_ids.max()}")
        lookup[1:] = arr[old_ids]
    else:
        missing = [int(i) for i in old_ids if int(i) not in classes]
        if missing:
            raise InvalidSourceError(f"{where}: no class for instance ids {missing[:10]}")
        lookup[1:] = [int(classes[int(i)]) for i in old_ids]
    if lookup.size and int(lookup.min()) < 0:
        raise InvalidSourceError(f"{where}: negative class id")
    return lookup


def write_sample(
    folder: Path, raw: RawSample, *, dataset: str, class_names: tuple[str, ...] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate, normalise and write one sample's files into ``folder``; the unit of (parallel) preparation.

    A plain function of picklable arguments, so a worker process can run it; :meth:`StoreWriter.record` then
    accounts for the result in the manifest.

    Returns:
        ``(manifest entry, {relative path: sha256})``.

    Raises:
        InvalidSourceError: the sample is malformed; the message names it (and its original file).
    """
    sid = safe_id(raw.sample_id)
    where = f"{dataset}/{sid}" + (f" ({raw.meta.get('original_file')})" if raw.meta.get("original_file") else "")
    image = np.asarray(raw.image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InvalidSourceError(f"{where}: image must be H×W×3 uint8, got {image.dtype} {image.shape}")
    inst = np.asarray(raw.instances)
    if inst.shape != image.shape[:2]:
        raise InvalidSourceError(
            f"{where}: instance map shape {inst.shape} does not match image shape {image.shape[:2]}"
        )
    relabelled, old_ids = relabel_sequential(inst)
    files = {"image": f"images/{sid}.tif", "instances": f"instances/{sid}.npy"}
    for sub in ("images", "instances"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    write_tif(folder / files["image"], np.ascontiguousarray(image))
    save_npy(folder / files["instances"], relabelled)
    if raw.classes is not None:
        lookup = _classes_lookup(raw.classes, old_ids, where)
        if class_names is not None and lookup.size and int(lookup.max()) >= len(class_names):
            raise InvalidSourceError(f"{where}: class id {int(lookup.max())} outside {class_names}")
        files["classes"] = f"classes/{sid}.npy"
        (folder / "classes").mkdir(exist_ok=True)
        save_npy(folder / files["classes"], lookup)
    if raw.ignore is not None:
        ign = np.asarray(raw.ignore)
        if ign.shape != image.shape[:2]:
            raise InvalidSourceError(f"{where}: ignore mask shape {ign.shape} differs from image {image.shape[:2]}")
        files["ignore"] = f"ignore/{sid}.npy"
        (folder / "ignore").mkdir(exist_ok=True)
        save_npy(folder / files["ignore"], ign.astype(bool))
    hashes = {rel: sha256_file(folder / rel) for rel in files.values()}
    meta = {k: v for k, v in raw.meta.items() if v is not None or k == "extra"}
    entry = {
        "id": sid,
        "split": raw.split,
        "height": int(image.shape[0]),
        "width": int(image.shape[1]),
        "n_instances": int(old_ids.size),
        "files": files,
        "meta": meta,
    }
    return entry, hashes


class StoreWriter:
    """Writes samples into a temporary folder; :meth:`commit` renames it to the final store.

    Args:
        dataset_dir: ``<root>/<dataset>``; the store goes to ``dataset_dir / store_name``.
        dataset: registered dataset name.
        converter_version: bump when converted output changes; stale stores are re-prepared.
        store_name: ``"prepared"`` or ``"prepared-<variant>"``.
        class_names: the dataset's class names (index 0 = background) when it has classes.
        splits: the source splits this writer prepares (recorded in the manifest; ``None``: not recorded).
        base: a committed store of the same variant to grow: :meth:`commit` moves the new samples' files into it
            and then replaces its manifest atomically, leaving every file already prepared untouched.
    """

    def __init__(
        self,
        dataset_dir: Path,
        *,
        dataset: str,
        converter_version: int,
        store_name: str = "prepared",
        class_names: tuple[str, ...] | None = None,
        variant: dict[str, Any] | None = None,
        splits: tuple[str, ...] | None = None,
        base: PreparedStore | None = None,
    ) -> None:
        self.dataset_dir = Path(dataset_dir)
        self.splits = tuple(splits) if splits is not None else None
        self.base = base
        self.final = self.dataset_dir / store_name
        self.dataset = dataset
        self.converter_version = converter_version
        self.class_names = class_names
        self.variant = variant or {}
        self.tmp = self.dataset_dir / f"{TMP_PREFIX}{store_name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        for sub in ("images", "instances"):
            (self.tmp / sub).mkdir(parents=True, exist_ok=False)
        self.samples: list[dict[str, Any]] = []
        self._ids: dict[str, str] = {}  # sample id -> where it came from (for duplicate messages)
        self.files: dict[str, str] = {}
        if base is not None:
            self._ids = {e["id"]: f"split {e['split']!r}, already prepared in {base.path}" for e in base.samples}

    def add(self, raw: RawSample) -> dict[str, Any]:
        """Validate, normalise and write one sample; returns its manifest entry."""
        sid = safe_id(raw.sample_id)
        if sid in self._ids:
            where = f"{self.dataset}/{sid}" + (
                f" ({raw.meta.get('original_file')})" if raw.meta.get("original_file") else ""
            )
            raise InvalidSourceError(f"{where}: duplicate sample id {sid!r}, already given to {self._ids[sid]}")
        entry, files = write_sample(self.tmp, raw, dataset=self.dataset, class_names=self.class_names)
        return self.record(entry, files, where=raw.meta.get("original_file"))

    def record(self, entry: dict[str, Any], files: dict[str, str], where: str | None = None) -> dict[str, Any]:
        """Account for a sample that :func:`write_sample` wrote into :attr:`tmp` (e.g. in a worker process)."""
        sid = entry["id"]
        if sid in self._ids:
            raise InvalidSourceError(
                f"{self.dataset}/{sid}: duplicate sample id {sid!r}, already given to {self._ids[sid]}"
            )
        self.files.update(files)
        self.samples.append(entry)
        self._ids[sid] = f"{self.dataset}/{sid}" + (f" ({where})" if where else "")
        return entry

    def counts(self) -> dict[str, dict[str, int]]:
        """Tiles and nuclei per source split and in total (``"all"``)."""
        out: dict[str, dict[str, int]] = {}
        for s in [*(self.base.samples if self.base is not None else ()), *self.samples]:
            for key in dict.fromkeys((s["split"], "all")):  # a sample of split "all" counts once
                c = out.setdefault(key, {"tiles": 0, "nuclei": 0})
                c["tiles"] += 1
                c["nuclei"] += s["n_instances"]
        return out

    def commit(self, **extra: Any) -> PreparedStore:
        """Write the manifest last and rename the folder into place atomically.

        An existing store at the destination (stale converter version, repair) is replaced. When growing a
        ``base`` store, the new files are moved into it and its manifest is replaced last (atomically): a reader
        sees either the old manifest (whose files are all untouched) or the new one.
        """
        if not self.samples:
            raise InvalidSourceError(f"{self.dataset_dir}: the native files produced no samples")
        if self.base is not None:
            return self._grow(extra)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "dataset": self.dataset,
            "converter_version": self.converter_version,
            "library_version": __version__,
            "variant": self.variant,
            "class_names": list(self.class_names) if self.class_names else None,
            "counts": self.counts(),
            **({"splits": sorted(self.splits)} if self.splits is not None else {}),
            **extra,
            "samples": self.samples,
            "files": self.files,
        }
        atomic_write_json(self.tmp / MANIFEST, manifest)
        _fsync_dir(self.tmp)
        if self.final.exists():
            trash = self.dataset_dir / f"{TMP_PREFIX}old-{uuid.uuid4().hex[:8]}"
            os.replace(self.final, trash)
            os.replace(self.tmp, self.final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(self.tmp, self.final)
        _fsync_dir(self.dataset_dir)
        return PreparedStore(self.final)

    def _grow(self, extra: dict[str, Any]) -> PreparedStore:
        if self.base is None:
            raise PreparedStoreError(f"{self.final}: no existing store to grow")
        old = self.base.manifest
        old_splits = self.base.splits or ()
        manifest = {
            **old,
            "library_version": __version__,
            "counts": self.counts(),
            "splits": sorted({*old_splits, *(self.splits or ())}),
            **extra,
            "samples": [*old["samples"], *self.samples],
            "files": {**old["files"], **self.files},
        }
        for rel in self.files:  # new ids only (checked in add), so no prepared file is overwritten
            dest = self.final / rel
            dest.parent.mkdir(exist_ok=True)
            os.replace(self.tmp / rel, dest)
        for sub in {Path(rel).parent for rel in self.files}:
            _fsync_dir(self.final / sub)
        atomic_write_json(self.final / MANIFEST, manifest)
        _fsync_dir(self.final)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return PreparedStore(self.final)

    def abort(self) -> None:
        """Remove the temporary folder."""
        shutil.rmtree(self.tmp, ignore_errors=True)
