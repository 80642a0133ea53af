"""Fake native copies of each dataset, generated at test time (nothing binary is committed).

Each module ``tests/fakedata/<name>.py`` defines ``NAME`` (the registered dataset name) and
``make(workdir: Path) -> FakeData``: it writes the dataset's exact upstream layout (folder names,
file names, formats and quirks) with tiny tiles under ``workdir / "native"`` and packs one
archive per resource under ``workdir / "archives"``, named like the resource's ``filename``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class FakeData:
    """A generated fake source.

    Attributes:
        native_dir: folder whose content, copied into ``<root>/<name>/``, is the extracted layout.
        archives: resource key -> archive file (file name = the resource's filename).
        tiles: expected number of converted tiles per split (and ``"all"``).
        nuclei: expected number of nuclei per split (and ``"all"``), where the fake fixes it.
        options: constructor keyword arguments the dataset needs for this fake.
    """

    native_dir: Path
    archives: dict[str, Path]
    tiles: dict[str, int]
    nuclei: dict[str, int] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


def generators() -> dict[str, Callable[[Path], FakeData]]:
    """Registered dataset name -> fake-data generator, for every module in this package."""
    out: dict[str, Callable[[Path], FakeData]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        out[mod.NAME] = mod.make
    return out
