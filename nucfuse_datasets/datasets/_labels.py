"""Label-image helpers shared by the raster sources (PCNS, TNBC, NuInsSeg, CryoNuSeg).

The rules, documented once for all of them:

* **Instance maps** (PCNS, NuInsSeg, CryoNuSeg) are read with :func:`read_instance_map`: 8-, 16- or
  32-bit single-channel PNG/TIFF are taken as they are; an RGB(A) file whose colour channels are identical
  is read from its first channel; an RGB(A) file whose channels differ is decoded as a 24-bit id,
  ``R + 256·G + 65536·B`` (alpha ignored). That decoding is lossless for label maps stored as 24-bit
  colours and keeps instances apart for colour-coded renderings (one colour per nucleus); a decoded map
  without any background pixel (id 0) is refused, since it would mean a coloured background.
* **Binary masks** (TNBC ground truth, vague areas) are read with :func:`read_binary_mask`: any non-zero
  value is foreground.
* **Instances from a binary mask** (:func:`binary_to_instances`): holes of at most ``max_hole`` pixels
  are filled first (background components that do not touch the tile border, found with 4-connectivity),
  then foreground components are labelled with 8-connectivity (pixels touching by an edge *or a corner*
  belong to the same nucleus). Nuclei that touch therefore merge into one instance; this is inherent to
  binary ground truth.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from nucfuse_datasets.errors import ArgumentError, InvalidSourceError
from nucfuse_datasets.io.files import read_image, read_label_image

__all__ = [
    "EIGHT",
    "FOUR",
    "binary_to_instances",
    "fill_small_holes",
    "label_components",
    "n_labels",
    "read_binary_mask",
    "read_instance_map",
]

#: 8-connectivity structuring element (edges and corners).
EIGHT = np.ones((3, 3), dtype=bool)
#: 4-connectivity structuring element (edges only).
FOUR = ndimage.generate_binary_structure(2, 1)


def _structure(connectivity: int) -> np.ndarray:
    if connectivity == 8:
        return EIGHT
    if connectivity == 4:
        return FOUR
    raise ArgumentError(f"connectivity must be 4 or 8, got {connectivity}")


def label_components(mask: np.ndarray, connectivity: int = 8) -> np.ndarray:
    """Label the connected components of a binary mask, ``1..N`` in raster order, as ``int32``.

    Args:
        mask: 2-D boolean (or 0/non-zero) array.
        connectivity: 8 (edges and corners connect) or 4 (edges only).

    Example:
        >>> import numpy as np
        >>> m = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]], bool)
        >>> int(label_components(m, 8).max()), int(label_components(m, 4).max())
        (1, 2)
    """
    labels, _ = ndimage.label(np.asarray(mask, dtype=bool), structure=_structure(connectivity))
    return labels.astype(np.int32, copy=False)


def fill_small_holes(mask: np.ndarray, max_area: int = 1) -> np.ndarray:
    """Fill holes of at most ``max_area`` pixels in a binary mask.

    A hole is a 4-connected background component that does not touch the border of the array (the
    complement of 8-connected foreground). Larger holes, and background open to the border, stay.

    Example:
        >>> import numpy as np
        >>> m = np.ones((5, 5), bool); m[2, 2] = False
        >>> bool(fill_small_holes(m)[2, 2])
        True
        >>> m[2, 1] = False  # now a 2-pixel hole
        >>> bool(fill_small_holes(m, max_area=1)[2, 2]), bool(fill_small_holes(m, max_area=2)[2, 2])
        (False, True)
    """
    mask = np.asarray(mask, dtype=bool)
    if max_area < 1 or mask.size == 0:
        return mask.copy()
    background, n = ndimage.label(~mask, structure=FOUR)
    if n == 0:
        return mask.copy()
    sizes = np.bincount(background.ravel(), minlength=n + 1)
    small = sizes <= max_area
    small[0] = False
    border = np.unique(np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]]))
    small[border] = False
    return mask | small[background]


def binary_to_instances(mask: np.ndarray, *, connectivity: int = 8, max_hole: int = 1) -> np.ndarray:
    """Instances of a binary mask: fill holes of at most ``max_hole`` px, then label components.

    Example:
        >>> import numpy as np
        >>> m = np.zeros((6, 8), bool); m[1:4, 1:4] = True; m[2, 2] = False; m[1:3, 5:7] = True
        >>> inst = binary_to_instances(m)
        >>> int(inst.max()), int(inst[2, 2])
        (2, 1)
    """
    filled = fill_small_holes(mask, max_hole) if max_hole > 0 else np.asarray(mask, dtype=bool)
    return label_components(filled, connectivity)


def read_binary_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a binary mask (PNG/TIFF, 1/8/16-bit, L or identical-channel RGB(A)) as a boolean array.

    Raises:
        InvalidSourceError: the file cannot be decoded, or it has colour channels that differ.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> from PIL import Image
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "gt.png"
        >>> Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).save(p)
        >>> read_binary_mask(p).tolist()
        [[False, True], [True, False]]
    """
    arr = read_image(path)
    if arr.ndim == 3:
        if arr.shape[2] in (2, 4):  # drop alpha (LA, RGBA)
            arr = arr[..., : arr.shape[2] - 1]
        if not all(np.array_equal(arr[..., 0], arr[..., c]) for c in range(1, arr.shape[2])):
            raise InvalidSourceError(f"{path}: a binary mask is expected, but its colour channels differ")
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise InvalidSourceError(f"{path}: a binary mask must be 2-D, got shape {arr.shape}")
    return np.asarray(arr != 0)


def read_instance_map(path: str | os.PathLike[str]) -> tuple[np.ndarray, str]:
    """Read an instance label map; returns ``(map, encoding)``.

    ``encoding`` is ``"integer"`` for single-channel (or identical-channel) files and ``"rgb24"`` when
    the id was decoded as ``R + 256·G + 65536·B`` from differing colour channels (see the module notes).

    Raises:
        InvalidSourceError: undecodable, float or negative labels, an unexpected channel count, or an
            RGB-decoded map without background.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> from PIL import Image
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "lab.png"
        >>> rgb = np.zeros((2, 3, 3), np.uint8); rgb[0, 1] = (4, 1, 0); rgb[1, 2] = (0, 0, 1)
        >>> Image.fromarray(rgb).save(p)
        >>> m, enc = read_instance_map(p)
        >>> m.tolist(), enc
        ([[0, 260, 0], [0, 0, 65536]], 'rgb24')
    """
    path = Path(path)
    try:
        return read_label_image(path), "integer"
    except InvalidSourceError:
        arr = read_image(path)
        if not (arr.ndim == 3 and arr.shape[2] in (3, 4) and arr.dtype == np.uint8):
            raise
    rgb = arr[..., :3].astype(np.int64)
    decoded = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    if decoded.size and not np.any(decoded == 0):
        raise InvalidSourceError(
            f"{path}: colour label image without any black (id 0) background pixel; it looks like a rendering, "
            "not an instance map"
        )
    return decoded.astype(np.int32), "rgb24"


def n_labels(instances: np.ndarray) -> int:
    """Number of distinct non-zero ids in a label map.

    Example:
        >>> import numpy as np
        >>> n_labels(np.array([[0, 5], [5, 9]]))
        2
    """
    ids = np.unique(np.asarray(instances))
    return int(ids.size - (1 if ids.size and ids[0] == 0 else 0))
