"""File helpers: hashing, atomic writes, safe readers for the native image/label/XML formats.

Every reader turns a malformed file into :class:`~nucfuse_datasets.errors.InvalidSourceError`
naming the file, so converters never leak a raw Pillow/tifffile/expat exception.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
import tokenize
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from nucfuse_datasets._labelmap import check_label_map
from nucfuse_datasets.errors import InvalidSourceError
from nucfuse_datasets.io.xmlfiles import (
    MAX_COORDINATE,
    AperioAnnotation,
    feed_expat,
    iter_xml_events,
    parse_aperio,
    safe_expat_parser,
)

__all__ = [
    "MAX_COORDINATE",
    "AperioAnnotation",
    "atomic_write",
    "atomic_write_json",
    "default_file_mode",
    "feed_expat",
    "iter_xml_events",
    "load_npy",
    "parse_aperio",
    "read_image",
    "read_label_image",
    "read_row",
    "safe_expat_parser",
    "save_npy",
    "sha256_file",
    "to_rgb_uint8",
    "write_tif",
]

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x"; _ = p.write_bytes(b"abc")
        >>> sha256_file(p)[:12]
        'ba7816bf8f01'
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def md5_file(path: str | os.PathLike[str]) -> str:
    """Hex md5 of a file (only for sources whose publisher gives md5)."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def default_file_mode() -> int:
    """The mode ``open()`` gives a new file: ``0o666`` less the process umask (read without changing it).

    Example:
        >>> default_file_mode() & 0o600
        384
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:  # Linux: the umask without a race
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it (briefly) and restoring it
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success fsync and ``os.replace`` it into place.

    On any exception the temporary file is removed and ``path`` is untouched. The file gets the mode ``open()``
    would give it (the process umask applies), not ``mkstemp``'s private 0600: a shared data root stays readable.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
        >>> with atomic_write(p, "w") as fh:
        ...     _ = fh.write("done")
        >>> p.read_text()
        'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, default_file_mode())
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically."""
    with atomic_write(path, "w") as fh:
        json.dump(obj, fh, indent=1, sort_keys=False)
        fh.write("\n")


def save_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Save an array as ``.npy`` (never pickled) to ``path``."""
    with open(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)


def _check_npy_header(fh: Any, path: str | os.PathLike[str]) -> tuple[tuple[int, ...], bool, np.dtype, int] | None:
    """Refuse, before ``np.load`` sees the open file ``fh``, what it must not handle itself; rewinds ``fh``.

    Returns ``(shape, fortran_order, dtype, data_offset)`` of a checked header, or ``None`` for a
    version ``np.load`` must judge itself.

    That is: no ``.npy`` magic (``np.load`` would open a zip as an ``NpzFile`` or try to unpickle),
    an object dtype, or a header that declares more data than the file holds (``np.load`` would
    allocate the declared size first: a 100-byte file could ask for terabytes).
    """
    fmt = np.lib.format
    version = fmt.read_magic(fh)
    if version not in ((1, 0), (2, 0), (3, 0)):
        fh.seek(0)
        return None  # np.load names the unsupported version
    # version 3.0 differs from 2.0 only by a utf-8 (not latin-1) header: same shape and itemsize
    read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, fortran, dtype = read_header(fh)
    offset = fh.tell()
    available = os.fstat(fh.fileno()).st_size - offset
    fh.seek(0)
    if dtype.hasobject:
        raise InvalidSourceError(
            f"{path}: the array needs pickle to load (object dtype); refusing to unpickle untrusted data"
        )
    if math.prod(shape) * dtype.itemsize > available:
        raise InvalidSourceError(
            f"{path}: truncated .npy file (the header declares shape {shape} of {dtype}, "
            f"the file holds {available} data bytes)"
        )
    return shape, fortran, dtype, offset


def _read_npy_body(fh: Any, header: tuple[tuple[int, ...], bool, np.dtype, int], path: Any) -> np.ndarray:
    """Read the data of a checked header straight into a new writable array (no second header parse)."""
    shape, fortran, dtype, offset = header
    nbytes = math.prod(shape) * dtype.itemsize
    buf = np.empty(nbytes, dtype=np.uint8)
    fh.seek(offset)
    if fh.readinto(buf) != nbytes:
        raise InvalidSourceError(f"{path}: truncated .npy file (fewer data bytes than the header declares)")
    return buf.view(dtype).reshape(shape, order="F" if fortran else "C")


def load_npy(path: str | os.PathLike[str], mmap_mode: str | None = None) -> np.ndarray:
    """Load a ``.npy`` file with ``allow_pickle=False``.

    Raises:
        InvalidSourceError: the file needs pickle (object arrays), is truncated or is not a valid
            ``.npy`` (a ``.npz`` archive or a pickle included).
    """
    try:
        with open(path, "rb") as fh:  # one open for the check and the read (this is on __getitem__'s path)
            header = _check_npy_header(fh, path)
            if mmap_mode is None:
                if header is not None and header[2].itemsize > 0 and header[2].subdtype is None:
                    return _read_npy_body(fh, header, path)
                return np.load(fh, allow_pickle=False)
        return np.load(path, allow_pickle=False, mmap_mode=mmap_mode)  # type: ignore[arg-type]
    except InvalidSourceError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InvalidSourceError(
                f"{path}: the array needs pickle to load (object dtype); refusing to unpickle untrusted data"
            ) from None
        raise InvalidSourceError(f"{path}: not a valid .npy file ({exc})") from None
    except (SyntaxError, tokenize.TokenError) as exc:  # numpy's fallback parser of Python 2 headers
        raise InvalidSourceError(f"{path}: not a valid .npy file (malformed header: {exc})") from None
    except (OSError, EOFError) as exc:
        raise InvalidSourceError(f"{path}: cannot read .npy file ({exc})") from None


def read_row(arr: np.ndarray, i: int) -> np.ndarray:
    """Row ``i`` of an array from :func:`load_npy` with ``mmap_mode="r"``, read with one ``readinto``.

    Every page touched through a memory map stays resident in the process, so streaming a large ``.npy``
    through it makes memory grow with the file; reading each row into its own buffer keeps it flat. Any
    other array: a copy of ``arr[i]``.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.npy"
        >>> np.save(p, np.arange(12).reshape(3, 4))
        >>> read_row(load_npy(p, mmap_mode="r"), 2).tolist()
        [8, 9, 10, 11]
    """
    if not isinstance(arr, np.memmap) or arr.filename is None or arr.ndim < 1 or not arr.flags.c_contiguous:
        return np.array(arr[i])
    row = np.empty(arr.shape[1:], arr.dtype)
    if row.nbytes:
        with open(arr.filename, "rb") as fh:
            fh.seek(arr.offset + int(i) * row.nbytes)
            if fh.readinto(row.reshape(-1).view(np.uint8).data) != row.nbytes:
                raise InvalidSourceError(f"{arr.filename}: truncated .npy file (row {i} is incomplete)")
    return row


def write_tif(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write an RGB ``uint8`` image as an uncompressed TIFF (fast to read back)."""
    import tifffile

    tifffile.imwrite(path, image, photometric="rgb" if image.ndim == 3 else "minisblack")


def _open_pil(path: Path) -> Any:
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = 2**31  # our own data: large TIFFs are legitimate, but bounded
    try:
        img = Image.open(path)
        img.load()
        return img
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InvalidSourceError(
            f"{path}: cannot decode image ({exc}); the file is truncated, damaged or not an image. "
            "Extract it again from the verified archive (or download the dataset again)"
        ) from None
    except Image.DecompressionBombError as exc:
        raise InvalidSourceError(f"{path}: image too large ({exc})") from None


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a PNG/TIFF/JPEG image as a numpy array, channels last, in its native dtype.

    TIFFs are read with tifffile (first page / level 0) and fall back to Pillow for
    compressions tifffile cannot decode without extra codecs (LZW in MoNuSeg training images).

    Raises:
        InvalidSourceError: the file cannot be decoded.
    """
    path = Path(path)
    if path.suffix.lower() in {".tif", ".tiff", ".svs"}:
        import tifffile

        try:
            with _quiet_decoders(), tifffile.TiffFile(path) as tif:
                return np.asarray(tif.series[0].levels[0].asarray())
        except Exception as exc:  # tifffile raises many types; fall back to Pillow below
            tif_error = exc
        try:
            with _quiet_decoders():
                return np.asarray(_open_pil(path))
        except InvalidSourceError:
            raise InvalidSourceError(
                f"{path}: cannot decode this TIFF ({_describe(path, tif_error)}); the file is truncated or damaged. "
                "Extract it again from the verified archive (or download the dataset again)"
            ) from None
    with _quiet_decoders():
        return np.asarray(_open_pil(path))


def _describe(path: Path, exc: BaseException) -> str:
    """A short reason for a decoding failure: the size when the file is empty, else the decoder's words."""
    try:
        size = path.stat().st_size
    except OSError:
        size = -1
    if size == 0:
        return "the file is empty"
    text = str(exc).strip() or type(exc).__name__
    return f"{size} bytes; {type(exc).__name__}: {text}" if len(text) < 200 else f"{size} bytes; {text[:200]}…"


@contextlib.contextmanager
def _quiet_decoders() -> Iterator[None]:
    """Silence the warnings and log lines Pillow and tifffile emit on damaged files (our own error says it all)."""
    import logging
    import warnings

    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def to_rgb_uint8(image: np.ndarray, source: str | os.PathLike[str] = "<array>") -> np.ndarray:
    """Normalise a decoded H&E image to ``H×W×3 uint8``: RGBA drops alpha, RGB passes.

    Raises:
        InvalidSourceError: greyscale, 16-bit/float, or an unexpected channel count.

    Example:
        >>> import numpy as np
        >>> to_rgb_uint8(np.zeros((2, 2, 4), np.uint8)).shape
        (2, 2, 3)
    """
    if image.dtype != np.uint8:
        raise InvalidSourceError(
            f"{source}: expected an 8-bit RGB(A) H&E image, got dtype {image.dtype} shape {image.shape}"
        )
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 2)):
        raise InvalidSourceError(f"{source}: greyscale image (shape {image.shape}); an RGB H&E image is expected")
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise InvalidSourceError(f"{source}: expected H×W×3 or H×W×4, got shape {image.shape}")
    if image.shape[2] == 4:
        image = image[..., :3]
    return np.ascontiguousarray(image)


def read_label_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an integer label map (PNG/TIFF, 8/16/32-bit) as a 2-D integer array.

    Raises:
        InvalidSourceError: not 2-D, or a float/negative label map.
    """
    arr = read_image(path)
    # some writers store labels as RGB(A) with identical channels
    if (
        arr.ndim == 3
        and arr.shape[2] in (1, 3, 4)
        and all(np.array_equal(arr[..., 0], arr[..., c]) for c in range(1, min(arr.shape[2], 3)))
    ):
        arr = arr[..., 0]
    return check_label_map(arr, str(path), InvalidSourceError, integral_floats=True, accept_bool=True)
