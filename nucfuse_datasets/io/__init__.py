"""Getting and keeping bytes: the first stage of the flow (bytes in → datasets → benchmark → scoring).

* :mod:`nucfuse_datasets.io.config` — the data root (argument, ``NUCFUSE_DATA_DIR``, the OS cache) and offline mode;
* :mod:`nucfuse_datasets.io.download` — resources, verified downloads through pooch, mirrors, first-use hashes;
* :mod:`nucfuse_datasets.io.archive` — safe extraction (no traversal, links, devices; a size bound);
* :mod:`nucfuse_datasets.io.files` — atomic writes, hashing, safe readers of images, ``.npy`` and XML;
* :mod:`nucfuse_datasets.io.store` — the prepared store: writer, manifest, lock, verification.
"""
