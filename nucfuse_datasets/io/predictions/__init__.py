"""Read the prediction files nuclei-segmentation tools already write, as instance maps (and classes) of the tiles.

One reader per format, one function to find and match a folder's files, one to read a file:

* :func:`find_predictions` recognises the folder's layout (:mod:`~nucfuse_datasets.io.predictions.find`) and
  matches every tile by ``<subset>__<sample_id>``, ``<sample_id>`` or the image name the tool was given;
* :func:`read_prediction` reads one :class:`PredictionFile` into a :class:`Prediction`:

  - ``"hovernet-mat"``, ``"hovernet-json"``: HoVer-Net's ``mat/`` and ``json/`` (:mod:`.hovernet`);
  - ``"geojson"`` (``"cellvit"``, ``"qupath"``): CellViT's ``cells.geojson``, QuPath's and InstanSeg's GeoJSON
    (:mod:`.geojson`);
  - ``"cellpose"``: ``_cp_masks.png|tif`` and, only with ``allow_pickle=True``, ``_seg.npy`` (:mod:`.raster`);
  - ``"label"``: label TIFF/PNG/``.npy`` from StarDist, InstanSeg or any tool (:mod:`.raster`).

Untrusted files are bounded (:mod:`._common`): size, vertices, coordinates, nesting; a pickle is never loaded
unless asked. Polygons are filled with their producer's convention (:mod:`.fill`).

Example:
    >>> import tempfile, pathlib, numpy as np, tifffile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> tifffile.imwrite(folder / "tnbc__01_1.tif", np.array([[0, 5], [5, 0]], np.int32))
    >>> files = find_predictions(folder, [("tnbc", "01_1"), ("tnbc", "01_2")])
    >>> sorted(files), files[("tnbc", "01_1")].format
    ([('tnbc', '01_1')], 'label')
    >>> read_prediction(files[("tnbc", "01_1")], (2, 2)).instances.tolist()
    [[0, 5], [5, 0]]
"""

from __future__ import annotations

from pathlib import Path

from nucfuse_datasets.errors import ArgumentError
from nucfuse_datasets.io.predictions._common import PREDICTION_FORMATS, ClassMap, Prediction, PredictionFile
from nucfuse_datasets.io.predictions.find import find_predictions
from nucfuse_datasets.io.predictions.geojson import read_geojson
from nucfuse_datasets.io.predictions.hovernet import read_hovernet_json, read_hovernet_mat
from nucfuse_datasets.io.predictions.raster import read_cellpose, read_label

__all__ = [
    "PREDICTION_FORMATS",
    "ClassMap",
    "Prediction",
    "PredictionFile",
    "find_predictions",
    "read_prediction",
]


def read_prediction(
    pf: PredictionFile,
    shape: tuple[int, int],
    *,
    allow_pickle: bool = False,
    class_map: ClassMap | None = None,
) -> Prediction:
    """Read one tile's prediction file as an ``int32`` instance map of ``shape`` (and classes where it has them).

    Args:
        pf: the file and its format (from :func:`find_predictions`, or built by hand).
        shape: the tile's ``(H, W)``; the prediction must be of this size.
        allow_pickle: unpickle Cellpose's ``_seg.npy`` (can run code: trusted files only); warns.
        class_map: ``{class name or type id: class id}`` for the formats with classes (HoVer-Net's ``inst_type``
            and ``type``, GeoJSON's ``classification.name``); a value ``None`` leaves those objects out. Without
            it, HoVer-Net's type ids are the classes and GeoJSON names give no classes (see
            ``Prediction.names_seen``). Ignored for the formats without classes.

    Raises:
        InvalidPredictionError: the file is malformed, of another size, or over a bound; the message names it.
        UnsafePredictionError: a pickle without ``allow_pickle=True``.
        DependencyNotFoundError: OpenCV is missing (HoVer-Net JSON, CellViT GeoJSON).
        ArgumentError: an unknown format or a malformed ``shape``.

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "pannuke__1.npy"
        >>> np.save(p, np.array([[0, 2], [2, 2]], np.uint16))
        >>> read_prediction(PredictionFile(p, "label"), (2, 2)).instances.dtype
        dtype('int32')
    """
    if pf.format not in PREDICTION_FORMATS:
        raise ArgumentError(f"{pf.path}: unknown prediction format {pf.format!r}; one of {list(PREDICTION_FORMATS)}")
    try:
        h, w = (int(n) for n in shape)
    except (TypeError, ValueError):
        raise ArgumentError(f"shape must be (height, width), got {shape!r}") from None
    if h <= 0 or w <= 0:
        raise ArgumentError(f"shape must be positive, got {shape!r}")
    path, size = Path(pf.path), (h, w)
    if pf.format == "hovernet-mat":
        return read_hovernet_mat(path, size, class_map)
    if pf.format == "hovernet-json":
        return read_hovernet_json(path, size, class_map)
    if pf.format in ("geojson", "cellvit", "qupath"):
        return read_geojson(path, size, class_map, None if pf.format == "geojson" else pf.format)
    if pf.format == "cellpose":
        return read_cellpose(path, size, allow_pickle)
    return read_label(path, size)
