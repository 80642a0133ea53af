"""The prepared store as read back: :class:`PreparedStore` (manifest, counts, verification) and temporaries' cleanup."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from nucfuse_datasets.errors import (
    PreparedStoreError,
)
from nucfuse_datasets.io.files import load_npy, sha256_file

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST", "TMP_PREFIX", "PreparedStore", "clean_temporaries"]

MANIFEST = "manifest.json"
FORMAT = "nucfuse-prepared"
FORMAT_VERSION = 1
TMP_PREFIX = ".tmp-"


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def clean_temporaries(dataset_dir: Path) -> int:
    """Remove temporary folders left by interrupted preparations (call while holding the lock)."""
    n = 0
    if dataset_dir.is_dir():
        for p in dataset_dir.iterdir():
            if p.name.startswith(TMP_PREFIX):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                n += 1
    return n


class PreparedStore:
    """Read access to a committed store.

    Raises:
        PreparedStoreError: the folder has no valid manifest.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        manifest = self.path / MANIFEST
        try:
            data = json.loads(manifest.read_text())
        except FileNotFoundError:
            raise PreparedStoreError(f"{self.path}: no {MANIFEST}; the store is incomplete") from None
        except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise PreparedStoreError(f"{manifest}: unreadable manifest ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise PreparedStoreError(f"{manifest}: not a nucfuse prepared-store manifest")
        self.manifest: dict[str, Any] = data

    @staticmethod
    def exists(path: Path) -> bool:
        """True when ``path`` holds a committed store (a manifest is present)."""
        return (Path(path) / MANIFEST).is_file()

    @property
    def converter_version(self) -> int:
        """Converter version that wrote the store."""
        return int(self.manifest.get("converter_version", -1))

    @property
    def samples(self) -> list[dict[str, Any]]:
        """Manifest entries, one per sample, in conversion order."""
        return self.manifest["samples"]

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """Tiles and nuclei per source split and in total."""
        return self.manifest["counts"]

    @property
    def splits(self) -> tuple[str, ...] | None:
        """The source splits prepared in this store (``None``: an older store, which holds every split)."""
        value = self.manifest.get("splits")
        return tuple(value) if isinstance(value, list) else None

    def iter_files(self) -> Iterator[tuple[str, str]]:
        """``(relative path, sha256)`` of every data file."""
        yield from self.manifest["files"].items()

    def verify(self, *, full: bool = True) -> list[str]:
        """Re-check the store; returns a list of problems (empty = intact).

        ``full=True`` re-hashes every file; ``False`` only checks presence and sizes of the arrays.
        """
        problems: list[str] = []
        for rel, digest in self.iter_files():
            path = self.path / rel
            if not path.is_file():
                problems.append(f"missing: {rel}")
            elif full and sha256_file(path) != digest:
                problems.append(f"hash mismatch: {rel}")
        return problems

    def load_array(self, rel: str) -> np.ndarray:
        """Load one ``.npy`` file of the store."""
        return load_npy(self.path / rel)
