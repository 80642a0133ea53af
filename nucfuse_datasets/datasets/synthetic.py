"""Synthetic H&E-like tiles with known instance maps: offline demos, tests and tutorials.

Tiles are rendered with the Beer–Lambert law from haematoxylin and eosin concentration fields
(stain vectors of Ruifrok & Johnston), so they behave like H&E under colour deconvolution and
stain normalisation: pink textured stroma with pale lumen gaps, and purple textured nuclei —
round dark "lymphocytes" and larger oval "epithelial" nuclei — some touching and some
overlapping (a later nucleus overwrites an earlier one in the instance map, as in polygon
sources). Some tiles carry an ambiguous region (the ``ignore`` mask).

Example:
    >>> import numpy as np
    >>> img, inst, cls = generate_tile(64, 64, np.random.default_rng(0))
    >>> img.shape, img.dtype, inst.dtype, int(inst.max()) > 0
    ((64, 64, 3), dtype('uint8'), dtype('int32'), True)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import ellipse

from nucfuse_datasets.datasets._base import NucleiDataset, Option, Sources
from nucfuse_datasets.datasets._parallel import Job
from nucfuse_datasets.datasets._registry import register
from nucfuse_datasets.errors import ArgumentError
from nucfuse_datasets.io.store import RawSample

__all__ = ["HE_STAINS", "Synthetic", "generate_tile", "synthetic_tile"]

#: Optical-density vectors (rows: haematoxylin, eosin), unit length.
HE_STAINS = np.array([[0.650, 0.704, 0.286], [0.072, 0.990, 0.105]])
HE_STAINS = HE_STAINS / np.linalg.norm(HE_STAINS, axis=1, keepdims=True)

CLASS_NAMES = ("background", "epithelial", "lymphocyte")


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    field = ndi.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return field / (field.std() + 1e-9)


def generate_tile(
    height: int,
    width: int,
    rng: np.random.Generator,
    *,
    density: float = 1.0,
    touching: float = 0.25,
    overlapping: float = 0.1,
    stain: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """Render one H&E-like tile.

    Args:
        height: tile height in pixels.
        width: tile width in pixels.
        rng: random generator (the tile is a pure function of its state).
        density: nuclei per 256² area relative to about 30 (Table 1's typical density).
        touching: fraction of nuclei placed so they touch an earlier one.
        overlapping: fraction of nuclei placed so they overlap an earlier one.
        stain: optional 2×3 OD stain matrix (rows H, E) to vary the colour.

    Returns:
        ``(image uint8 H×W×3, instances int32 H×W, classes {id: class id})``; class ids index
        ``("background", "epithelial", "lymphocyte")``.
    """
    if height < 8 or width < 8:
        raise ArgumentError(f"tile must be at least 8×8, got {height}×{width}")
    shape = (height, width)
    stains = HE_STAINS if stain is None else np.asarray(stain, float)
    # eosin: stroma with fibres and pale lumen gaps
    eosin = 0.33 + 0.09 * _smooth_noise(rng, shape, 6.0) + 0.05 * _smooth_noise(rng, shape, 1.0)
    lumen = _smooth_noise(rng, shape, 14.0) > 1.3
    eosin[lumen] *= 0.15
    haem = 0.10 + 0.04 * np.abs(_smooth_noise(rng, shape, 3.0))

    instances = np.zeros(shape, np.int32)
    classes: dict[int, int] = {}
    n_target = max(1, round(30 * density * height * width / 65536))
    centres: list[tuple[float, float, float]] = []
    chromatin = _smooth_noise(rng, shape, 1.2)
    for k in range(1, n_target + 1):
        cls = 2 if rng.random() < 0.35 else 1
        a = rng.uniform(4.0, 6.0) if cls == 2 else rng.uniform(6.0, 11.0)
        b = a * (rng.uniform(0.85, 1.0) if cls == 2 else rng.uniform(0.55, 0.9))
        mode = rng.random()
        if centres and mode < touching + overlapping:
            r0, c0, a0 = centres[rng.integers(len(centres))]
            gap = (a0 + b) * (1.0 if mode < touching else rng.uniform(0.55, 0.8))
            ang = rng.uniform(0, 2 * np.pi)
            r, c = r0 + gap * np.sin(ang), c0 + gap * np.cos(ang)
        else:
            r, c = rng.uniform(0, height), rng.uniform(0, width)
        rr, cc = ellipse(r, c, a, b, shape=shape, rotation=rng.uniform(-np.pi, np.pi))
        if rr.size == 0:
            continue
        centres.append((r, c, a))
        instances[rr, cc] = k
        classes[k] = cls
        level = rng.uniform(1.1, 1.5) if cls == 2 else rng.uniform(0.7, 1.05)
        haem[rr, cc] = level + 0.15 * chromatin[rr, cc]
        eosin[rr, cc] *= 0.5
    # nuclei hidden completely by later ones disappear from the class table
    present = set(np.unique(instances).tolist()) - {0}
    classes = {k: v for k, v in classes.items() if k in present}

    od = haem[..., None] * stains[0] + np.clip(eosin, 0, None)[..., None] * stains[1]
    rgb = 255.0 * np.exp(-od)
    rgb = ndi.gaussian_filter(rgb, sigma=(0.6, 0.6, 0)) + rng.normal(0, 2.0, rgb.shape)
    image = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    return image, instances, classes


def _ambiguous_region(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    h, w = shape
    rr, cc = ellipse(rng.uniform(0, h), rng.uniform(0, w), h / 8, w / 6, shape=shape)
    mask[rr, cc] = True
    return mask


@register
class Synthetic(NucleiDataset):
    """Synthetic H&E-like tiles with exact instance maps, two nucleus classes and some ignore regions.

    Needs no download: "preparing" renders the tiles deterministically from ``seed``.

    Args:
        root: data root (see :class:`~nucfuse_datasets.datasets._base.NucleiDataset`).
        split: only ``"all"``.
        download: ignored (nothing to download).
        transforms: Sample transform.
        progress: progress bar (``None`` = on a terminal).
        **options: ``n_tiles=`` number of tiles (24); ``tile_size=`` one size (``256`` or ``(H, W)``), or a
            sequence of sizes used in turn; ``seed=`` random seed (0; the same arguments always give
            byte-identical tiles); ``density=`` nuclei density relative to about 30 per 256² area (1.0).

    Example:
        >>> from nucfuse_datasets import get_dataset
        >>> ds = get_dataset("synthetic", root=getfixture("tmp_path"), n_tiles=3, tile_size=(64, 80))
        >>> s = ds[0]
        >>> s.image.shape, s.class_names
        ((64, 80, 3), ('background', 'epithelial', 'lymphocyte'))
    """

    name = "synthetic"
    title = "Synthetic H&E"
    description = "Procedurally rendered H&E-like tiles with known instance maps (no real data)."
    license = "CC0-1.0 (generated by nucfuse_datasets)"
    citation = "Generated by nucfuse_datasets; no citation needed."
    homepage = "https://arxiv.org/abs/2601.20104"
    splits = ("all",)
    test_split = None
    class_names = CLASS_NAMES
    magnification = 40.0
    declared_options = (
        Option("n_tiles", 24, doc="number of tiles", check=lambda v: Synthetic._n_tiles(v)),
        Option(
            "tile_size", 256, doc="a size, (H, W), or sizes used in turn", check=lambda v: Synthetic._parse_sizes(v)
        ),
        Option("seed", 0, doc="random seed", check=int),
        Option("density", 1.0, doc="nuclei density relative to about 30 per 256²", check=float),
    )

    n_tiles: int
    tile_size: list[tuple[int, int]]
    seed: int
    density: float

    def _configure(self) -> None:
        self.sizes = self.tile_size

    @staticmethod
    def _n_tiles(value: Any) -> int:
        if int(value) < 1:
            raise ArgumentError(f"n_tiles must be >= 1, got {value}")
        return int(value)

    @staticmethod
    def _parse_sizes(tile_size: Any) -> list[tuple[int, int]]:
        if isinstance(tile_size, int | np.integer):
            return [(int(tile_size), int(tile_size))]
        items = list(tile_size)
        if len(items) == 2 and all(isinstance(v, int | np.integer) for v in items):
            return [(int(items[0]), int(items[1]))]
        out = []
        for it in items:
            if isinstance(it, int | np.integer):
                out.append((int(it), int(it)))
            else:
                h, w = it
                out.append((int(h), int(w)))
        if not out:
            raise ArgumentError("tile_size must name at least one size")
        return out

    @property
    def options(self) -> dict[str, Any]:
        """Generation parameters: each combination gets its own prepared store."""
        size: Any = (
            self.sizes[0][0]
            if len(self.sizes) == 1 and self.sizes[0][0] == self.sizes[0][1]
            else [list(s) for s in self.sizes]
        )
        opts: dict[str, Any] = {"n_tiles": self.n_tiles, "tile_size": size, "seed": self.seed}
        if self.density != 1.0:
            opts["density"] = self.density
        return opts

    def _convert(self, sources: Sources) -> Iterator[RawSample | Job]:
        for i in range(self.n_tiles):
            # a deferred job per tile: `prepare(workers=N)` generates tiles in N processes
            yield Job(synthetic_tile, (self.seed, i, self.sizes[i % len(self.sizes)], self.density))


def synthetic_tile(seed: int, i: int, size: tuple[int, int], density: float) -> RawSample:
    """Tile ``i`` of the synthetic dataset with ``seed`` (a module-level function: picklable for workers)."""
    rng = np.random.default_rng([seed, i])
    h, w = size
    image, instances, classes = generate_tile(h, w, rng, density=density)
    ignore = _ambiguous_region(rng, (h, w)) if i % 4 == 3 else None
    return RawSample(
        sample_id=f"synthetic_{seed}_{i:04d}",
        split="all",
        image=image,
        instances=instances,
        classes=classes,
        ignore=ignore,
        meta={"organ": "synthetic", "magnification": 40.0, "mpp": 0.25, "original_file": None},
    )
