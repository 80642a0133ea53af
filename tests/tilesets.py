"""A tiny, unregistered dataset class for protocol tests: tiles of given sizes, splits and metadata."""

from __future__ import annotations

from typing import Any

import numpy as np

from nucfuse_datasets.datasets._base import NucleiDataset
from nucfuse_datasets.io.store import RawSample


def squares(h: int, w: int, step: int = 20, size: int = 12, offset: int = 0) -> np.ndarray:
    """Instance map with a grid of ``size``² squares every ``step`` px (ids 1..N in row-major order)."""
    inst = np.zeros((h, w), np.int32)
    k = 0
    for y in range(offset, h, step):
        for x in range(offset, w, step):
            k += 1
            inst[y : y + size, x : x + size] = k
    return inst


class TileSet(NucleiDataset):
    """Tiles described by ``spec``: dicts with ``id``, ``h``, ``w`` and optional ``split``, ``extra``."""

    name = "tileset"
    title = "test tiles"
    license = "test"
    citation = "test"
    homepage = "https://example.invalid"
    splits = ("train", "test")
    test_split = "test"

    def __init__(self, root: Any, spec: list[dict[str, Any]], *, name: str | None = None, **kw: Any) -> None:
        self.spec = spec
        if name:
            self.name = name
        super().__init__(root, **kw)

    @property
    def options(self) -> dict[str, Any]:
        return {"spec": self.spec}

    def _convert(self, sources):
        for i, t in enumerate(self.spec):
            h, w = t["h"], t["w"]
            rng = np.random.default_rng(i)
            image = rng.integers(0, 200, (h, w, 3), dtype=np.uint8)
            yield RawSample(
                t["id"], t.get("split", "train"), image, squares(h, w, offset=i % 7), meta={"extra": t.get("extra", {})}
            )
