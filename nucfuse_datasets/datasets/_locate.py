"""Where a dataset's sources are: which resources an instance needs, and where each one's content is.

Found on disk (the extracted folder or the archive), or to fetch; otherwise the not-found error naming the exact
files expected. A base of :class:`~nucfuse_datasets.datasets._prepare.Preparation`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from nucfuse_datasets.datasets._spec import DatasetSpec
from nucfuse_datasets.errors import (
    DatasetNotFoundError,
    ManualDownloadRequired,
)
from nucfuse_datasets.io.download import Resource

__all__ = ["SourceLocation"]


class SourceLocation(DatasetSpec):
    """Which resources feed which splits, and where their content is (a base of ``Preparation``)."""

    def needed_splits(self, split: str | None = None) -> tuple[str, ...]:
        """The source splits that ``split`` (default: this instance's) needs: itself, or every split for ``"all"``."""
        split = self.split if split is None else split
        return tuple(self.splits) if split == "all" else (split,)

    def _locate_sources(
        self, download: bool, splits: Iterable[str] | None = None
    ) -> dict[str, tuple[str, Path | None]]:
        """Decide, per resource feeding ``splits``, where its content comes from, without writing anything."""
        ddir = self.dataset_dir
        splits = self.needed_splits() if splits is None else tuple(splits)
        located: dict[str, tuple[str, Path | None]] = {}
        missing: list[Resource] = []
        for res in self.active_resources(splits):
            base = self._part_root(res, ddir, 2, splits)  # the whole content, or the parts of these splits
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
            raise self._not_found(missing, download, splits)
        return located

    def active_resources(self, splits: Iterable[str] | None = None) -> tuple[Resource, ...]:
        """Resources this instance needs: all, or only the one a ``source`` option names (and feeding ``splits``)."""
        resources = self.resources
        if "source" in self.__dict__.get("_chosen", {}):
            resources = tuple(r for r in resources if r.key == self.source)  # type: ignore[attr-defined]
        if splits is not None:
            wanted = tuple(splits)
            resources = tuple(r for r in resources if r.feeds(wanted))
        return resources

    def _not_found(
        self, missing: list[Resource], download: bool, splits: Iterable[str] | None = None
    ) -> DatasetNotFoundError:
        ddir = self.dataset_dir
        splits = tuple(splits) if splits is not None else self.needed_splits()
        which = "" if set(splits) >= set(self.splits) else f" (split {', '.join(splits)})"
        lines = [f"{self.title or self.name}{which} not found in {ddir}."]
        if not self.root.exists():
            lines.append(
                f"The data root {self.root} does not exist: check the root argument (--root, $NUCFUSE_DATA_DIR), "
                "or create it and put the files below into it."
            )
        lines.append("Expected there (the archive as downloaded, or the folder it unpacks to):")
        for res in missing:
            markers = res.markers(list(splits))  # the parts of these splits, for a resource with one per split
            alt = f" — or the extracted folder containing {' and '.join(map(repr, markers))}" if markers else ""
            lines.append(f"  - {res.describe()}{alt}")
        manual = [r for r in missing if not r.downloadable]
        if manual:
            if self.manual_instructions:
                lines.append("How to get it:\n" + self.manual_instructions.strip())
            lines.append(f"Licence: {self.license}.")
            return ManualDownloadRequired("\n".join(lines))
        if not download:
            split_arg = "" if self.split == "all" else f" --split {self.split}"
            lines.append(
                f"Pass download=True (or run `nucfuse download {self.name}{split_arg}`) to fetch "
                f"{'them' if len(missing) > 1 else 'it'}. Licence: {self.license}."
            )
        return DatasetNotFoundError("\n".join(lines))
