"""Safe reading of MATLAB ``.mat`` label files (CoNSeP, CPM17).

Rules, documented once for the ``.mat`` sources:

* Files are read with :func:`scipy.io.loadmat` (MATLAB v4, v6 and v7 formats), asking only for the
  variables the converter needs. ``scipy`` never executes code from a ``.mat`` file.
* **MATLAB v7.3** files are HDF5 containers that scipy cannot read; they are refused with an
  :class:`~nucfuse_datasets.errors.InvalidSourceError` that says so (re-save them with
  ``save(..., '-v7')`` in MATLAB, or ``scipy.io.savemat`` after reading them with ``h5py``).
* Label maps are often stored as ``double`` (CoNSeP's ``inst_map``). They are accepted when every
  value is finite, integral and non-negative, and cast to ``int64``; anything else is refused.
* Any other failure (truncated file, not a MAT file, missing variable) becomes an
  ``InvalidSourceError`` naming the file, so converters never leak a scipy exception.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nucfuse_datasets._labelmap import check_ids
from nucfuse_datasets.errors import InvalidSourceError

__all__ = ["integral_array", "label_map", "load_mat", "mat_version"]


def mat_version(path: str | os.PathLike[str]) -> tuple[int, int]:
    """MAT-file format version as scipy reports it: ``(0, x)`` v4, ``(1, x)`` v5–v7, ``(2, x)`` v7.3 (HDF5).

    Raises:
        InvalidSourceError: the file cannot be read or is not a MAT file.

    Example:
        >>> import tempfile, pathlib, numpy as np, scipy.io
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.mat"
        >>> scipy.io.savemat(p, {"inst_map": np.zeros((2, 2))})
        >>> mat_version(p)
        (1, 0)
    """
    from scipy.io.matlab import matfile_version

    try:
        major, minor = matfile_version(str(path))
    except Exception as exc:  # scipy raises ValueError, MatReadError, OSError...
        raise InvalidSourceError(f"{path}: not a readable MATLAB .mat file ({exc})") from None
    return int(major), int(minor)


def load_mat(path: str | os.PathLike[str], keys: Sequence[str], optional: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Read variables of a ``.mat`` file.

    Args:
        path: the file.
        keys: variables that must be present.
        optional: variables read when present.

    Returns:
        ``{name: array}`` for every present variable of ``keys`` and ``optional``.

    Raises:
        InvalidSourceError: a v7.3 (HDF5) file, an unreadable file, or a missing required variable
            (the message lists the variables that are there).

    Example:
        >>> import tempfile, pathlib, numpy as np, scipy.io
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.mat"
        >>> scipy.io.savemat(p, {"inst_map": np.eye(2)})
        >>> load_mat(p, ["inst_map"])["inst_map"].tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    from scipy.io import loadmat, whosmat

    path = Path(path)
    major, _ = mat_version(path)
    if major == 2:
        raise InvalidSourceError(
            f"{path}: MATLAB v7.3 (HDF5) .mat file, which scipy cannot read; the expected files are MATLAB v5/v7. "
            "Re-save it in MATLAB with save(..., '-v7') or obtain the original release"
        )
    wanted = [*keys, *optional]
    try:
        data = loadmat(str(path), variable_names=wanted)
    except NotImplementedError as exc:  # v7.3 detected by scipy itself
        raise InvalidSourceError(f"{path}: MATLAB v7.3 (HDF5) .mat file, which scipy cannot read ({exc})") from None
    except Exception as exc:  # MatReadError, ValueError, zlib.error, EOFError, struct.error...
        raise InvalidSourceError(f"{path}: cannot read .mat file ({exc})") from None
    missing = [k for k in keys if k not in data]
    if missing:
        try:
            present = sorted(name for name, _, _ in whosmat(str(path)))
        except Exception:  # pragma: no cover - the file was just read successfully
            present = []
        raise InvalidSourceError(f"{path}: variable(s) {missing} missing from the .mat file (found: {present})")
    return {k: np.asarray(data[k]) for k in wanted if k in data}


def integral_array(value: np.ndarray, where: str) -> np.ndarray:
    """Cast an integer or integral-valued float array to ``int64``; refuse negatives and fractions.

    Raises:
        InvalidSourceError: non-numeric, non-finite, fractional or negative values.

    Example:
        >>> integral_array(np.array([[1.0], [3.0]]), "x").ravel().tolist()
        [1, 3]
    """
    arr = check_ids(np.asarray(value), where, InvalidSourceError, integral_floats=True, accept_bool=True)
    if arr.size and arr.dtype == np.uint64 and int(arr.max()) > np.iinfo(np.int64).max:
        raise InvalidSourceError(f"{where}: label values too large for int64")  # the cast would wrap
    return arr.astype(np.int64)


def label_map(value: np.ndarray, where: str) -> np.ndarray:
    """A 2-D non-negative ``int64`` label map from a ``.mat`` variable (float-stored maps are cast).

    Raises:
        InvalidSourceError: not 2-D, or values that are not non-negative integers.

    Example:
        >>> label_map(np.array([[0.0, 2.0], [2.0, 5.0]]), "x").dtype
        dtype('int64')
    """
    arr = np.asarray(value)
    if arr.ndim != 2:
        raise InvalidSourceError(f"{where}: a label map must be 2-D, got shape {arr.shape}")
    return integral_array(arr, where)  # the dtype and value checks of every label map (_labelmap.check_ids)
