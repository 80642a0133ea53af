"""Label images: StarDist / InstanSeg / any tool's label TIFF, PNG or ``.npy``, and Cellpose's masks.

* **Label images** (format ``"label"``): a 2-D integer map, 0 = background, as ``.tif``/``.tiff`` (8/16/32-bit,
  e.g. ``tifffile.imwrite``; StarDist's ``save_tiff_imagej_compatible`` stores ``int32`` labels as ``int16``),
  16-bit ``.png`` or ``.npy`` (never unpickled). Integral float maps are accepted. InstanSeg's
  ``<name>_instanseg_prediction.tiff`` is ``int32`` (H×W), or 2×H×W for its nuclei-and-cells models: plane 0
  (the nuclei) is read.
* **Cellpose** (format ``"cellpose"``, ``MouseLand/cellpose`` ``io.save_masks`` / ``masks_flows_to_seg``):
  ``<name>_cp_masks.png`` (``--save_png``: ``uint16`` through ``cv2.imwrite``), ``<name>_cp_masks.tif``
  (``--save_tif``: ``tifffile`` with zlib, the masks' own dtype) and ``<name>_seg.npy`` (written unless
  ``--no_npy``: ``np.save`` of a **pickled** dict whose ``"masks"`` entry is the label map, ``uint16`` or
  ``uint32``). Unpickling can run any code, so a ``_seg.npy`` is refused with
  :class:`~nucfuse_datasets.errors.UnsafePredictionError` unless ``allow_pickle=True``, which warns
  (:class:`~nucfuse_datasets.errors.UnsafePickleWarning`).

Before decoding, an image's header must declare the tile's size (a decompression bomb or a prediction of another
image is refused without decoding it); ``.npy`` headers are checked against the file size by
:func:`~nucfuse_datasets.io.files.load_npy`.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from nucfuse_datasets.errors import (
    InvalidPredictionError,
    InvalidSourceError,
    UnsafePickleWarning,
    UnsafePredictionError,
)
from nucfuse_datasets.io.files import load_npy, read_image, read_label_image
from nucfuse_datasets.io.predictions._common import Prediction, finish

__all__ = ["read_cellpose", "read_label"]

_PICKLE_HINT = "unpickling untrusted data can run arbitrary code"


#: PNG colour type -> channels (grey, RGB, palette, grey + alpha, RGBA)
_PNG_BANDS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _declared_shape(path: Path) -> tuple[int, ...] | None:
    """The array shape an image file's header declares (``None`` when the header cannot be read).

    PNG: the ``IHDR`` chunk, read directly (Pillow's own size check depends on a process-wide setting); TIFF: the
    first series of ``tifffile`` (headers only).
    """
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                return tuple(int(n) for n in tif.series[0].shape)
        with open(path, "rb") as fh:
            head = fh.read(29)
    except Exception:  # the decoder below names what is wrong
        return None
    if len(head) < 29 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    w, h = struct.unpack(">II", head[16:24])
    bands = _PNG_BANDS.get(head[25], 1)
    return (h, w) if bands == 1 else (h, w, bands)


def _pixels(path: Path, shape: tuple[int, int]) -> Any:
    """A label image's array, after its header was checked against the tile's ``shape``."""
    declared = _declared_shape(path)
    planes = declared is not None and len(declared) == 3 and declared[1:] == tuple(shape) and declared[0] in (1, 2)
    if declared is not None and not planes and tuple(declared[:2]) != tuple(shape):
        raise InvalidPredictionError(
            f"{path}: the image is {'×'.join(map(str, declared))}, the tile is {shape[0]}×{shape[1]}; predictions "
            "must be label maps of the tile's size"
        )
    try:
        if planes:  # InstanSeg's nuclei-and-cells output: plane 0 holds the nuclei
            return read_image(path)[0]
        return read_label_image(path)
    except InvalidSourceError as exc:
        raise InvalidPredictionError(str(exc)) from None


def read_label(path: Path, shape: tuple[int, int], fmt: str = "label") -> Prediction:
    """Read a label image (``.tif``/``.tiff``/``.png``) or ``.npy`` label map of the tile's size.

    Raises:
        InvalidPredictionError: undecodable, another size than the tile, not an integer map, negative ids.
        UnsafePredictionError: an ``.npy`` file that needs pickle (object dtype).

    Example:
        >>> import tempfile, pathlib, tifffile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "tile.tif"
        >>> tifffile.imwrite(p, np.array([[0, 7], [7, 0]], np.uint16))
        >>> read_label(p, (2, 2)).instances.tolist()
        [[0, 7], [7, 0]]
    """
    if path.suffix.lower() == ".npy":
        try:
            arr = load_npy(path)
        except InvalidSourceError as exc:
            if "pickle" in str(exc):
                raise UnsafePredictionError(
                    f"{path}: the array needs pickle to load (object dtype), and {_PICKLE_HINT}; a label map is "
                    "an integer array: save it with np.save(path, labels.astype(np.int32))"
                ) from None
            raise InvalidPredictionError(str(exc)) from None
    else:
        arr = _pixels(path, shape)
    return finish(path, fmt, arr, shape, None, None)


def read_cellpose(path: Path, shape: tuple[int, int], allow_pickle: bool = False) -> Prediction:
    """Read Cellpose's ``<name>_cp_masks.png|tif`` or, with ``allow_pickle=True``, its ``<name>_seg.npy``.

    Raises:
        UnsafePredictionError: a ``_seg.npy`` file without ``allow_pickle=True``.
        InvalidPredictionError: what :func:`read_label` refuses; a ``_seg.npy`` that cannot be unpickled or holds
            no ``"masks"`` label map.

    Warns:
        UnsafePickleWarning: a ``_seg.npy`` file is unpickled (``allow_pickle=True``).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "tile_seg.npy"
        >>> np.save(p, {"masks": np.array([[0, 1], [2, 2]], np.uint16)}, allow_pickle=True)
        >>> read_cellpose(p, (2, 2))
        Traceback (most recent call last):
        ...
        nucfuse_datasets.errors.UnsafePredictionError: ...tile_seg.npy: Cellpose's _seg.npy is a pickled ...
        >>> import warnings
        >>> with warnings.catch_warnings(record=True):
        ...     read_cellpose(p, (2, 2), allow_pickle=True).instances.tolist()
        [[0, 1], [2, 2]]
    """
    if not path.name.lower().endswith("_seg.npy"):
        return read_label(path, shape, "cellpose")
    if not allow_pickle:
        raise UnsafePredictionError(
            f"{path}: Cellpose's _seg.npy is a pickled Python dict and {_PICKLE_HINT}, so it is refused. Pass "
            "allow_pickle=True (CLI: --allow-pickle) only if you trust the file, or rerun Cellpose with "
            "--save_png (or --save_tif) to get <name>_cp_masks.png label images, which need no pickle"
        )
    warnings.warn(
        UnsafePickleWarning(f"{path}: unpickling a Cellpose _seg.npy file (allow_pickle=True); {_PICKLE_HINT}"),
        stacklevel=3,
    )
    try:
        data = np.load(path, allow_pickle=True)
        if isinstance(data, np.ndarray) and data.dtype == object and data.ndim == 0:
            data = data.item()
    except Exception as exc:  # unpickling raises anything
        raise InvalidPredictionError(f"{path}: cannot load the _seg.npy file ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or "masks" not in data:
        raise InvalidPredictionError(
            f"{path}: not a Cellpose _seg.npy file (expected a dict with a 'masks' label map, got "
            f"{type(data).__name__}{' with keys ' + str(sorted(map(str, data))[:8]) if isinstance(data, dict) else ''})"
        )
    masks = data["masks"]
    if isinstance(masks, np.ndarray) and masks.ndim == 3 and masks.shape[0] == 1:
        masks = masks[0]
    return finish(path, "cellpose", masks, shape, None, None)
