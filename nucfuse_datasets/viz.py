"""Plotting of samples and predictions (needs the ``plot`` extra: matplotlib).

Example:
    >>> import numpy as np, matplotlib
    >>> matplotlib.use("Agg")
    >>> from nucfuse_datasets.schema import Sample, SampleMeta
    >>> inst = np.zeros((32, 32), np.int32); inst[4:12, 4:12] = 1
    >>> s = Sample(image=np.full((32, 32, 3), 220, np.uint8), instances=inst,
    ...            meta=SampleMeta(dataset="d", sample_id="x", split="all"))
    >>> fig = plot_sample(s, prediction=inst)
    >>> len(fig.axes)
    2
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nucfuse_datasets.errors import ArgumentError, DependencyNotFoundError
from nucfuse_datasets.schema import Sample

__all__ = ["instance_boundaries", "plot_sample"]


def instance_boundaries(instances: np.ndarray) -> np.ndarray:
    """Boolean mask of pixels whose 4-neighbourhood contains another id (inner instance contours).

    Example:
        >>> import numpy as np
        >>> m = np.zeros((5, 5), np.int32); m[1:4, 1:4] = 1
        >>> int(instance_boundaries(m).sum())  # the 8 outer pixels of the 3×3 square
        8
    """
    inst = np.asarray(instances)
    edge = np.zeros(inst.shape, bool)
    edge[:-1, :] |= inst[:-1, :] != inst[1:, :]
    edge[1:, :] |= inst[1:, :] != inst[:-1, :]
    edge[:, :-1] |= inst[:, :-1] != inst[:, 1:]
    edge[:, 1:] |= inst[:, 1:] != inst[:, :-1]
    return edge & (inst > 0)


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - depends on the environment
        raise DependencyNotFoundError("plotting needs matplotlib: pip install 'nucfuse-datasets[plot]'") from None
    return plt


def _overlay(image: np.ndarray, instances: np.ndarray, colour: tuple[int, int, int], thickness: int = 1) -> np.ndarray:
    out = image.copy()
    edge = instance_boundaries(instances)
    if thickness > 1:
        from scipy import ndimage

        edge = ndimage.binary_dilation(edge, iterations=thickness - 1) & (np.asarray(instances) > 0)
    out[edge] = colour
    return out


def _window(
    shape: tuple[int, int], crop: tuple[int, int, int, int] | None, zoom: float | None
) -> tuple[int, int, int, int]:
    h, w = shape
    if crop is not None:
        y0, y1, x0, x1 = (int(v) for v in crop)
        if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
            raise ArgumentError(f"crop {crop} is not a window (y0, y1, x0, x1) inside the {h}×{w} tile")
        return y0, y1, x0, x1
    if zoom is not None:
        if zoom < 1:
            raise ArgumentError(f"zoom must be at least 1, got {zoom}")
        ch, cw = max(1, round(h / zoom)), max(1, round(w / zoom))
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        return y0, y0 + ch, x0, x0 + cw
    return 0, h, 0, w


def plot_sample(
    sample: Sample,
    prediction: np.ndarray | None = None,
    *,
    show_titles: bool = True,
    suptitle: str | None = None,
    crop: tuple[int, int, int, int] | None = None,
    zoom: float | None = None,
    figsize: tuple[float, float] | None = None,
    thickness: int | None = None,
) -> Any:
    """Figure with the tile and its instance contours (green), plus a prediction panel (yellow).

    Ignore masks are shaded red. Returns the matplotlib ``Figure``.

    Args:
        sample: the tile.
        prediction: an H×W instance map for a second panel.
        show_titles: panel titles (sample id and nucleus count; "prediction").
        suptitle: a title over the figure.
        crop: ``(y0, y1, x0, x1)``: show only this window of the tile.
        zoom: show the central ``1/zoom`` of each side (``zoom=4`` on a 1000×1000 tile: its central 250×250).
        figsize: matplotlib figure size in inches (default 5 × 5 per panel).
        thickness: contour width in tile pixels (default: grows with the shown window, so that contours stay
            visible on 1000×1000 tiles at the default size).

    Example:
        >>> import numpy as np, matplotlib
        >>> matplotlib.use("Agg")
        >>> from nucfuse_datasets.schema import Sample, SampleMeta
        >>> inst = np.zeros((1000, 1000), np.int32); inst[100:120, 100:120] = 1
        >>> s = Sample(image=np.full((1000, 1000, 3), 220, np.uint8), instances=inst,
        ...            meta=SampleMeta(dataset="d", sample_id="x", split="all"))
        >>> fig = plot_sample(s, crop=(0, 250, 0, 250), figsize=(8, 8))
        >>> fig.axes[0].images[0].get_array().shape, fig.get_size_inches().tolist()
        ((250, 250, 3), [8.0, 8.0])
    """
    plt = _pyplot()
    y0, y1, x0, x1 = _window(sample.shape, crop, zoom)
    side = max(y1 - y0, x1 - x0)
    width = int(thickness) if thickness is not None else max(1, round(side / 350))
    panels = 1 if prediction is None else 2
    fig, axes = plt.subplots(1, panels, figsize=figsize or (5 * panels, 5), squeeze=False)
    image = sample.image[y0:y1, x0:x1]
    img = _overlay(image, sample.instances[y0:y1, x0:x1], (0, 255, 0), width)
    if sample.ignore is not None:
        ign = sample.ignore[y0:y1, x0:x1]
        img = img.copy()
        img[ign] = (0.6 * img[ign] + 0.4 * np.array([255, 0, 0])).astype(np.uint8)
    axes[0, 0].imshow(img, interpolation="nearest")
    whole = (y0, y1, x0, x1) == (0, sample.shape[0], 0, sample.shape[1])
    window = "" if whole else f", rows {y0}:{y1} cols {x0}:{x1}"
    if show_titles:
        axes[0, 0].set_title(f"{sample.meta.sample_id} ({sample.n_instances} nuclei{window})")
    if prediction is not None:
        pred = np.asarray(prediction)[y0:y1, x0:x1]
        axes[0, 1].imshow(_overlay(image, pred, (255, 255, 0), width), interpolation="nearest")
        if show_titles:
            axes[0, 1].set_title("prediction")
    for ax in axes.ravel():
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout(rect=(0, 0, 1, 0.94) if suptitle else None)
    return fig
