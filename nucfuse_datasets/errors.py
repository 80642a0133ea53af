"""The error tree of ``nucfuse_datasets``.

Every error the library raises on purpose is a subclass of :class:`NucFuseError`, so
``except NucFuseError`` catches all of them. Each class also inherits from the closest
built-in exception (``FileNotFoundError``, ``ValueError``, ``OSError``, ``ImportError``)
so that generic handlers keep working.

Example:
    >>> from nucfuse_datasets.errors import NucFuseError, DatasetNotFoundError
    >>> issubclass(DatasetNotFoundError, (NucFuseError, FileNotFoundError))
    True
"""

from __future__ import annotations

import errno

__all__ = [
    "ArgumentError",
    "BinaryMaskWarning",
    "ChecksumError",
    "CountMismatchWarning",
    "DatasetNotFoundError",
    "DegenerateStainsError",
    "DependencyNotFoundError",
    "DownloadError",
    "InsufficientTissueError",
    "InvalidPredictionError",
    "InvalidSampleError",
    "InvalidSourceError",
    "LockTimeoutError",
    "ManualDownloadRequired",
    "MetricInputError",
    "MissingPredictionWarning",
    "NotFittedError",
    "NucFuseError",
    "NucFuseWarning",
    "OfflineError",
    "PredictionFailedError",
    "PreparedStoreError",
    "StainEstimationError",
    "StainFallbackWarning",
    "StorageError",
    "TestSetMismatchError",
    "UnexpectedContentError",
    "UnsafeArchiveError",
    "UnsafePickleWarning",
    "UnsafePredictionError",
]


class NucFuseError(Exception):
    """Base class of every error raised on purpose by ``nucfuse_datasets``."""


class ArgumentError(NucFuseError, ValueError):
    """An argument has a value outside the documented set; the message lists the valid values."""


class DatasetNotFoundError(NucFuseError, FileNotFoundError):
    """Neither prepared data nor native source files were found, and nothing may be downloaded.

    The message names the folder that was searched, the exact files expected there and how to
    obtain them.
    """


class ManualDownloadRequired(DatasetNotFoundError):
    """The source cannot be downloaded automatically (sign-in, Kaggle, a Drive folder, Box).

    The message gives the page to visit, the exact file or folder names expected and the
    folder to put them in.
    """


class DownloadError(NucFuseError, OSError):
    """A download failed from every mirror; the message names each URL and what went wrong."""


class OfflineError(DownloadError):
    """``NUCFUSE_OFFLINE=1`` is set, so a download that was needed was refused."""


class UnexpectedContentError(DownloadError):
    """A download delivered something other than the archive (an HTML page, an implausibly small file)."""


class ChecksumError(NucFuseError, ValueError):
    """A file's hash differs from the pinned one; the message names the file, the expected and actual hash."""


class InvalidSourceError(NucFuseError, ValueError):
    """A native source file is malformed or not what the dataset's format says it is."""


class UnsafeArchiveError(InvalidSourceError):
    """An archive member would be written outside the target folder (``../``, absolute path, link)."""


class PreparedStoreError(NucFuseError, OSError):
    """The prepared store is incomplete or corrupted (hash mismatch, missing file, bad manifest)."""


class StorageError(NucFuseError, OSError):
    """Writing under the data root failed: the disk is full, a quota is exceeded or the file system is read-only.

    Raised in place of the bare ``OSError`` while extracting or preparing; the temporary output has been removed,
    so freeing space (or choosing another ``root``) and running again is all that is needed.

    Example:
        >>> StorageError.matches(OSError(errno.ENOSPC, "No space left on device"))
        True
    """

    ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})

    @classmethod
    def matches(cls, exc: BaseException) -> bool:
        """True when ``exc`` is a plain ``OSError`` caused by the storage (full, over quota, read-only)."""
        return isinstance(exc, OSError) and not isinstance(exc, NucFuseError) and exc.errno in cls.ERRNOS


class LockTimeoutError(PreparedStoreError):
    """Another process held the dataset's preparation lock for longer than the timeout."""


class InvalidSampleError(NucFuseError, ValueError):
    """A :class:`~nucfuse_datasets.schema.Sample` was built from arrays of the wrong shape or dtype."""


class MetricInputError(NucFuseError, ValueError):
    """Instance maps given to a metric are not valid (shape mismatch, negative or non-integer ids)."""


class TestSetMismatchError(NucFuseError, ValueError):
    """Local data lack tiles of the shipped NucFuse-test id list (a different upstream version?)."""

    __test__ = False  # not a pytest test class


class StainEstimationError(NucFuseError, ValueError):
    """The stains of an image cannot be estimated (base of the two errors below)."""


class InsufficientTissueError(StainEstimationError):
    """Too few tissue pixels (blank, near-white or tiny tile) for a Macenko estimate."""


class DegenerateStainsError(StainEstimationError):
    """The tissue shows only one stain (no haematoxylin or no eosin), so the two vectors coincide."""


class NotFittedError(NucFuseError, RuntimeError):
    """A stain normaliser was used before :meth:`~nucfuse_datasets.transforms.stain.MacenkoNormalizer.fit`."""


class InvalidPredictionError(NucFuseError, ValueError):
    """A model's prediction for a test image is not a valid instance map; the message names the image."""


class PredictionFailedError(NucFuseError, RuntimeError):
    """The user's ``predict_fn`` raised on a test image; the message names the tile, the original error is chained."""


class DependencyNotFoundError(NucFuseError, ImportError):
    """An optional dependency is missing; the message names the pip extra that provides it."""


class UnsafePredictionError(InvalidPredictionError):
    """A prediction file needs ``pickle`` to load (Cellpose's ``_seg.npy``, an object ``.npy``), which can run code.

    Refused unless the caller trusts the file and passes ``allow_pickle=True`` (CLI: ``--allow-pickle``); the
    message names the file and the pickle-free alternative (e.g. Cellpose's ``--save_png`` masks).
    """


class NucFuseWarning(UserWarning):
    """Base class of the library's warnings."""


class StainFallbackWarning(NucFuseWarning):
    """A tile was returned unchanged because its stains could not be estimated.

    Emitted once per transform instance; the transform's ``n_fallbacks`` counts every case.
    """


class BinaryMaskWarning(NucFuseWarning):
    """A prediction's id spans many disconnected components: probably a 0/1 mask passed as an instance map.

    Pass ``label_components=True`` (CLI: ``--label-components``) to turn each connected component into an instance.
    """


class MissingPredictionWarning(NucFuseWarning):
    """Saved predictions lack some tiles and ``missing="empty"`` scored them as empty maps."""


class CountMismatchWarning(NucFuseWarning):
    """Prepared data holds a different number of tiles or nuclei than the source or the paper publishes."""


class UnsafePickleWarning(NucFuseWarning):
    """A prediction file was unpickled because the caller passed ``allow_pickle=True`` (trusted files only)."""
