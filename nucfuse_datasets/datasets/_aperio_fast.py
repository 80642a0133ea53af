"""A fast path for the regions of regular Aperio ImageScope XML files (private; used by MoNuSeg).

:func:`nucfuse_datasets.io.files.parse_aperio` streams the document through expat with a Python callback per
element, about 2 µs per ``<Vertex>``; a MoNuSeg file has 50,000-90,000 of them. Here the document is still
checked by the same refusing expat parser (DTDs, entities, malformed XML), but with no element callbacks,
and the vertices are read by regular expressions over the bytes. The fast path only answers for the
regular layout it can read without doubt — no comments, CDATA, processing instructions beyond the XML
declaration, entity or character references; every ``Region`` closed once, every ``<Vertex>`` inside it
written ``<Vertex X="…" Y="…" [Z="…"]/>`` with plain numbers — and returns ``None`` for anything else, so
the caller falls back to the full parser (which also produces every error message). On the files it
accepts it gives the same regions, in the same order, with the same float values (the same string to
float conversion), and the same root attributes.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from nucfuse_datasets.errors import InvalidSourceError
from nucfuse_datasets.io.files import MAX_COORDINATE, safe_expat_parser

__all__ = ["fast_aperio_regions"]

_REGION_START = re.compile(rb"<Region(?=[\s/>])")
_NUM = rb"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
# one group per vertex, `a" Y="b`, so a vertex costs one Python object; the separator is replaced in C below
_VERTEX = re.compile(rb"<Vertex X=\"(" + _NUM + rb"\" Y=\"" + _NUM + rb")\"(?: Z=\"[^\"<&]*\")? ?/>")


def _root_attrs(path: str | os.PathLike[str], data: bytes) -> dict[str, str] | None:
    """Check the whole document with the refusing expat parser; return the root element's attributes."""
    from xml.parsers import expat

    parser = safe_expat_parser(path)
    root: list[dict[str, str]] = []

    def first(_tag: str, attrs: dict[str, str]) -> None:
        root.append(dict(attrs))
        parser.StartElementHandler = None  # every later element is checked in C only

    parser.StartElementHandler = first
    try:
        parser.Parse(data, True)
    except InvalidSourceError:
        raise
    except (expat.ExpatError, LookupError, ValueError):
        return None  # the full parser reports it
    return root[0] if root else None


def fast_aperio_regions(path: str | os.PathLike[str]) -> tuple[dict[str, str], list[np.ndarray]] | None:
    """Root attributes and all regions (``N×2`` float ``(x, y)``) in document order, or ``None``.

    ``None`` means "not the regular layout": parse with :func:`nucfuse_datasets.io.files.parse_aperio`.

    Raises:
        InvalidSourceError: the document has a DTD, entity declarations or external entities.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.xml"
        >>> _ = p.write_text('<Annotations MicronsPerPixel="0.25"><Annotation Id="1"><Regions>'
        ...     '<Region Id="1"><Vertices><Vertex X="1.5" Y="2"/><Vertex X="4" Y="2"/>'
        ...     '<Vertex X="4" Y="5"/></Vertices></Region></Regions></Annotation></Annotations>')
        >>> root, regions = fast_aperio_regions(p)
        >>> root, regions[0].tolist()
        ({'MicronsPerPixel': '0.25'}, [[1.5, 2.0], [4.0, 2.0], [4.0, 5.0]])
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    if b"&" in data or b"<!" in data or data.count(b"<?") > (1 if data.lstrip().startswith(b"<?xml") else 0):
        return None
    root = _root_attrs(path, data)
    if root is None:
        return None
    parts = _REGION_START.split(data)
    if len(parts) < 2 or b"</Region>" in parts[0]:
        return None
    counts: list[int] = []
    for part in parts[1:]:
        end = part.find(b"</Region>")
        if end < 0 or part.find(b"</Region>", end + 1) >= 0:
            return None  # self-closing or nested regions: leave them to the full parser
        counts.append(part.count(b"<Vertex", 0, end))
    found = _VERTEX.findall(data)
    if len(found) != sum(counts) or len(found) != data.count(b"<Vertex"):
        return None  # a vertex outside a region, or one written otherwise
    # every value matched the number pattern, so the C parser reads exactly 2 per vertex, correctly rounded
    flat = np.fromstring(b" ".join(found).replace(b'" Y="', b" "), dtype=np.float64, sep=" ")
    if flat.size != 2 * len(found) or not np.all(np.isfinite(flat)):
        return None
    if flat.size and float(np.abs(flat).max()) > MAX_COORDINATE:
        return None
    xy = flat.reshape(-1, 2)
    bounds = np.cumsum([0, *counts])
    regions: list[Any] = [xy[bounds[k] : bounds[k + 1]] for k in range(len(counts))]
    return root, regions
