"""Append-only CSV metrics log (one row per epoch) that survives resumes."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["CSVLogger"]


class CSVLogger:
    """One CSV row per epoch, written and flushed as soon as the epoch ends.

    Args:
        path: the CSV file.
        fieldnames: column order (extra keys of a row are ignored, missing ones left empty).
        resume_epoch: when resuming after ``resume_epoch`` completed epochs, rows with a larger ``epoch`` (written
            after the checkpoint, before an interruption) are dropped so the log matches the restored state;
            ``None`` starts a new file.
    """

    def __init__(self, path: str | Path, fieldnames: Sequence[str], *, resume_epoch: int | None = None) -> None:
        self.path = Path(path)
        self.fieldnames = list(fieldnames)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept: list[dict[str, str]] = []
        if resume_epoch is not None and self.path.is_file():
            with open(self.path, newline="") as fh:
                kept = [r for r in csv.DictReader(fh) if _epoch(r) <= resume_epoch]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.fieldnames, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            writer.writerows(kept)
        os.replace(tmp, self.path)

    def log(self, row: Mapping[str, Any]) -> None:
        """Append one row."""
        with open(self.path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.fieldnames, extrasaction="ignore", lineterminator="\n")
            writer.writerow({k: _fmt(v) for k, v in row.items()})

    def rows(self) -> list[dict[str, str]]:
        """Every row written so far (as strings)."""
        with open(self.path, newline="") as fh:
            return list(csv.DictReader(fh))


def _epoch(row: Mapping[str, str]) -> int:
    try:
        return int(row.get("epoch") or 0)
    except ValueError:
        return 0


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.8g}"
    return v
