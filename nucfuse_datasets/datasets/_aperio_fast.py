"""A fast path for the regions of regular Aperio ImageScope XML files (private; used by MoNuSeg).

:func:`nucfuse_datasets.io.files.parse_aperio` streams the document through expat with a Python callback per
element, about 2 µs per ``<Vertex>``; a MoNuSeg file has 50,000-90,000 of them. Here the vertices are found and
their numbers converted with whole-array numpy operations over the file's bytes, and the document is still
checked by the same refusing expat parser (DTDs, entities, malformed XML), but on a copy in which every vertex
element that was read is replaced by an empty ``<V/>``: an empty element stands for an empty element in every
context, so the copy is well-formed exactly when the file is, and it is a quarter of the size.

The fast path only answers for the regular layout it can read without doubt — no comments, CDATA, processing
instructions beyond the XML declaration, entity or character references; every ``Region`` closed once, every
``<Vertex>`` inside one and written ``<Vertex X="…" Y="…" [Z="…"]/>`` with plain numbers — and returns ``None``
for anything else, so the caller falls back to the full parser (which also produces every error message). On
the files it accepts it gives the same regions, in the same order, with the same float values, and the same root
attributes. Decimals of at most 15 significant digits are converted as ``mantissa / 10**k``: both operands are
exact doubles, so IEEE division rounds the quotient correctly, which is what ``float()`` returns (Clinger's
fast path); any other number (exponents, more digits) goes through ``float()`` itself.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from nucfuse_datasets.errors import InvalidSourceError
from nucfuse_datasets.io.files import MAX_COORDINATE, safe_expat_parser

__all__ = ["fast_aperio_regions"]

_NUM = re.compile(rb"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_POW10 = 10.0 ** np.arange(18)  # exact doubles
_LT, _QUOTE, _SPACE = ord("<"), ord('"'), ord(" ")
_SPACES = np.frombuffer(b" \t\n\r\f\v/>", np.uint8)  # what may follow "<Region" (the regex lookahead [\s/>])


class _Doc:
    """The file's bytes with views for whole-array matching.

    ``words[i]`` is the 8 bytes from offset ``i``, ``tails[i]`` the 16 bytes before offset ``i`` (zero padding
    outside the file).
    """

    def __init__(self, data: bytes) -> None:
        self.size = len(data)
        padded = bytes(16) + data + bytes(24)
        self.arr = np.frombuffer(padded, np.uint8, count=self.size, offset=16)
        self.words = np.ndarray((self.size + 17,), "<u8", padded, 16, (1,))
        self.tails = np.ndarray((self.size + 1,), "V16", padded, 0, (1,))

    def matches(self, at: np.ndarray, text: bytes) -> np.ndarray:
        """Whether ``text`` is written at each offset of ``at`` (offsets at most the file size)."""
        ok = at + len(text) <= self.size
        for i in range(0, len(text), 8):
            chunk = text[i : i + 8]
            word = self.words[at + i]
            if len(chunk) < 8:
                word &= np.uint64((1 << 8 * len(chunk)) - 1)
            ok &= word == np.uint64(int.from_bytes(chunk, "little"))
        return ok


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


def _vertices(doc: _Doc, lt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Start and end of every ``<Vertex …/>`` element and of its X and Y numbers, or ``None`` if irregular."""
    arr = doc.arr
    cand = lt[doc.matches(lt, b"<Vertex")]
    start = cand[doc.matches(cand, b'<Vertex X="')]
    if start.size != cand.size:
        return None  # a <Vertex written otherwise (attribute order, spacing)
    quotes = np.flatnonzero(arr == _QUOTE)
    k = np.searchsorted(quotes, start + 10)  # the opening quote of X (quotes[k] == start + 10)
    if start.size and int(k.max()) + 3 >= quotes.size:
        return None
    x0 = start + 11
    x1 = quotes[k + 1]
    if not doc.matches(x1, b'" Y="').all():
        return None
    y0 = x1 + 5
    y1 = quotes[k + 3]
    pos = y1 + 1
    has_z = doc.matches(pos, b' Z="')
    if has_z.any():  # the Z value: no '<' inside (no '&' anywhere is checked on the whole document)
        if int(k[has_z].max()) + 5 >= quotes.size:
            return None
        zs, ze = pos[has_z] + 4, quotes[k[has_z] + 5]
        nxt = np.searchsorted(lt, zs)
        if (lt.take(nxt, mode="clip")[nxt < lt.size] < ze[nxt < lt.size]).any():
            return None
        pos[has_z] = ze + 1
    pos += doc.words[pos] & np.uint64(0xFF) == _SPACE
    if not doc.matches(pos, b"/>").all():
        return None
    return start, pos + 2, np.stack([x0, y0], axis=1).ravel(), np.stack([x1, y1], axis=1).ravel()


def _count(mask: np.ndarray) -> np.ndarray:
    """Per column of a ``w × m`` boolean matrix (``w < 256``), how many are set."""
    return mask.view(np.uint8).sum(axis=0, dtype=np.uint8)


def _plain_numbers(doc: _Doc, e: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values of the spans ending at ``e`` of length ``n`` (1-16), and whether each is a plain decimal."""
    w = int(n.max())
    # w × m: the 16 bytes before each end, every number right-aligned in its column
    chars = np.ascontiguousarray(doc.tails[e].view(np.uint8).reshape(-1, 16)[:, 16 - w :].T)
    col = np.arange(w, dtype=np.uint8)[:, None]
    inside = col >= (w - n)[None, :]
    digit = chars - np.uint8(ord("0"))
    isd = (digit < 10) & inside
    isdot = (chars == ord(".")) & inside
    first = doc.arr[e - n]
    signed = (first == ord("-")) | (first == ord("+"))
    ndig, ndot = _count(isd), _count(isdot)
    ok = (ndig >= 1) & (ndot <= 1) & (ndig + ndot <= 15) & (_count(inside & ~(isd | isdot)) == signed)
    # Horner over the digits only: every partial value is an integer < 10**15 < 2**53, exact in float64
    scale = isd * np.uint8(9) + np.uint8(1)
    mantissa = np.zeros(e.size)
    for step, row in zip(scale, digit * isd, strict=True):
        mantissa = mantissa * step + row
    frac = np.where(ndot == 1, w - 1 - (isdot * col).sum(axis=0, dtype=np.uint8), 0)  # digits after the dot
    # mantissa and 10**frac are exact doubles, so the division rounds the quotient as float() does
    values = mantissa / _POW10[frac]
    return np.where(first == ord("-"), -values, values), ok


def _numbers(doc: _Doc, starts: np.ndarray, ends: np.ndarray) -> np.ndarray | None:
    """``float()`` of each byte span, or ``None`` if one is not a plain number."""
    lens = ends - starts
    out = np.empty(starts.size, np.float64)
    simple = (lens >= 1) & (lens <= 16)
    if simple.all() and simple.size:
        out, simple = _plain_numbers(doc, ends, lens)
    elif simple.any():
        values, ok = _plain_numbers(doc, ends[simple], lens[simple])
        out[simple] = values
        simple[np.flatnonzero(simple)[~ok]] = False
    for i in np.flatnonzero(~simple):  # exponents, long numbers, or no number at all
        text = doc.arr[starts[i] : ends[i]].tobytes()
        if not _NUM.fullmatch(text):
            return None
        out[i] = float(text)
    return out


def _regions(doc: _Doc, lt: np.ndarray, vstart: np.ndarray) -> np.ndarray | None:
    """Vertices per ``Region``; ``None`` unless regions alternate open/close and hold every vertex."""
    cand = lt[doc.matches(lt, b"<Region")]
    opened = cand[np.isin(doc.arr.take(cand + 7, mode="clip"), _SPACES) & (cand + 7 < doc.size)]
    closed = lt[doc.matches(lt, b"</Region>")]
    if opened.size == 0 or opened.size != closed.size:
        return None
    if not ((opened < closed).all() and (closed[:-1] < opened[1:]).all()):
        return None  # self-closing, nested or unclosed regions: leave them to the full parser
    counts = np.searchsorted(vstart, closed) - np.searchsorted(vstart, opened)
    return counts if int(counts.sum()) == vstart.size else None  # else a vertex outside every region


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
    doc = _Doc(data)
    arr = doc.arr
    lt = np.flatnonzero(arr == _LT)
    found = _vertices(doc, lt)
    if found is None:
        return None
    vstart, vend, num_start, num_end = found
    # the document with each vertex element read above replaced by "<V/>" (keep "<V" and "/>")
    keep_from = np.concatenate([[0], vend - 2])
    keep_to = np.concatenate([vstart + 2, [arr.size]])
    n = keep_to - keep_from
    if (n < 0).any():
        return None
    rest = arr[np.repeat(keep_from - (np.cumsum(n) - n), n) + np.arange(int(n.sum()))].tobytes()
    # vertex interiors hold no '<' or '&', so these checks on the copy hold for the file
    if b"&" in rest or b"<!" in rest or rest.count(b"<?") > (1 if rest.lstrip().startswith(b"<?xml") else 0):
        return None
    root = _root_attrs(path, rest)
    if root is None:
        return None
    counts = _regions(doc, lt, vstart)
    if counts is None:
        return None
    flat = _numbers(doc, num_start, num_end)
    if flat is None or not np.all(np.isfinite(flat)):
        return None
    if flat.size and float(np.abs(flat).max()) > MAX_COORDINATE:
        return None
    xy = flat.reshape(-1, 2)
    bounds = np.cumsum([0, *counts.tolist()])
    regions: list[Any] = [xy[bounds[k] : bounds[k + 1]] for k in range(counts.size)]
    return root, regions
