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

from nucfuse_datasets.errors import DependencyNotFoundError
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


def _overlay(image: np.ndarray, instances: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    out = image.copy()
    out[instance_boundaries(instances)] = colour
    return out


def plot_sample(
    sample: Sample,
    prediction: np.ndarray | None = None,
    *,
    show_titles: bool = True,
    suptitle: str | None = None,
) -> Any:
    """Figure with the tile and its instance contours (green), plus a prediction panel (yellow).

    Ignore masks are shaded red. Returns the matplotlib ``Figure``.
    """
    plt = _pyplot()
    panels = 1 if prediction is None else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 5), squeeze=False)
    img = _overlay(sample.image, sample.instances, (0, 255, 0))
    if sample.ignore is not None:
        img = img.copy()
        img[sample.ignore] = (0.6 * img[sample.ignore] + 0.4 * np.array([255, 0, 0])).astype(np.uint8)
    axes[0, 0].imshow(img)
    if show_titles:
        axes[0, 0].set_title(f"{sample.meta.sample_id} ({sample.n_instances} nuclei)")
    if prediction is not None:
        axes[0, 1].imshow(_overlay(sample.image, np.asarray(prediction), (255, 255, 0)))
        if show_titles:
            axes[0, 1].set_title("prediction")
    for ax in axes.ravel():
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig
