"""Safe XML readers (no DTDs, no entities) and the Aperio/ImageScope annotation parser.

Example:
    >>> from nucfuse_datasets.io.xmlfiles import MAX_COORDINATE
    >>> MAX_COORDINATE
    2147483648.0
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nucfuse_datasets.errors import InvalidSourceError

__all__ = [
    "MAX_COORDINATE",
    "AperioAnnotation",
    "feed_expat",
    "iter_xml_events",
    "parse_aperio",
    "safe_expat_parser",
]

#: Largest vertex coordinate (pixels) a polygon parser accepts; no slide is anywhere near this wide,
#: and beyond ``2**63`` the polygon filler overflows.
MAX_COORDINATE = 2.0**31


def safe_expat_parser(path: str | os.PathLike[str]) -> Any:
    """An expat parser that refuses DTDs, entity declarations and external entities.

    A document type declaration, any entity declaration or an external entity reference raises
    :class:`~nucfuse_datasets.errors.InvalidSourceError` at once, so "billion laughs" and
    external-entity documents are refused before any expansion. Set its element handlers, then
    call :func:`feed_expat`.
    """
    from xml.parsers import expat

    parser = expat.ParserCreate()
    parser.buffer_text = True

    def forbid_dtd(*_: object) -> None:
        raise InvalidSourceError(f"{path}: XML with a document type declaration (DTD) is refused (unsafe)")

    def forbid_entity(*_: object) -> None:
        raise InvalidSourceError(f"{path}: XML entity declarations are refused (entity expansion attack)")

    def forbid_external(*_: object) -> int:
        raise InvalidSourceError(f"{path}: XML external entity references are refused")

    parser.StartDoctypeDeclHandler = forbid_dtd
    parser.EntityDeclHandler = forbid_entity
    parser.UnparsedEntityDeclHandler = forbid_entity
    parser.ExternalEntityRefHandler = forbid_external
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    return parser


def feed_expat(parser: Any, path: str | os.PathLike[str]) -> None:
    """Feed a file to a parser from :func:`safe_expat_parser`, mapping errors to InvalidSourceError."""
    from xml.parsers import expat

    try:
        with open(path, "rb") as fh:
            parser.ParseFile(fh)
    except InvalidSourceError:
        raise
    except expat.ExpatError as exc:
        raise InvalidSourceError(f"{path}: malformed XML ({exc})") from None
    except (LookupError, ValueError) as exc:  # from expat's lookup of the encoding in the XML declaration
        raise InvalidSourceError(f"{path}: unsupported XML encoding ({exc})") from None
    except OSError as exc:
        raise InvalidSourceError(f"{path}: cannot read XML ({exc})") from None


def iter_xml_events(path: str | os.PathLike[str]) -> list[tuple[str, str, dict[str, str]]]:
    """All ``("start", tag, attrs)`` / ``("end", tag, {})`` events of an XML file, parsed safely.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.xml"; _ = p.write_text('<a x="1"><b/></a>')
        >>> [e[:2] for e in iter_xml_events(p)]
        [('start', 'a'), ('start', 'b'), ('end', 'b'), ('end', 'a')]
    """
    events: list[tuple[str, str, dict[str, str]]] = []
    parser = safe_expat_parser(path)
    parser.StartElementHandler = lambda tag, attrs: events.append(("start", tag, attrs))
    parser.EndElementHandler = lambda tag: events.append(("end", tag, {}))
    feed_expat(parser, path)
    return events


@dataclass
class AperioAnnotation:
    """One ``<Annotation>`` of an Aperio ImageScope XML file.

    Attributes:
        attrs: the Annotation element's attributes.
        names: ``Name`` values of its ``Attributes/Attribute`` children (MoNuSAC puts the class here).
        regions: ``(region attributes, N×2 float array of (x, y) vertices)`` in document order.
    """

    attrs: dict[str, str]
    names: list[str] = field(default_factory=list)
    regions: list[tuple[dict[str, str], np.ndarray]] = field(default_factory=list)


def parse_aperio(path: str | os.PathLike[str]) -> tuple[dict[str, str], list[AperioAnnotation]]:
    """Parse an Aperio ImageScope XML file (MoNuSeg, MoNuSAC): root attributes and annotations.

    Vertices are read from ``Region/Vertices/Vertex`` ``X``/``Y`` attributes (float pixel
    coordinates, X = column). Regions outside any ``Annotation`` are collected in an annotation
    with empty attributes. Parsing streams through expat (no tree), refusing DTDs and entities.

    Raises:
        InvalidSourceError: unsafe or malformed XML, or a vertex without numeric ``X``/``Y`` (or with a
            non-finite one, or one beyond :data:`MAX_COORDINATE`).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.xml"
        >>> _ = p.write_text('<Annotations MicronsPerPixel="0.25"><Annotation Id="1"><Attributes>'
        ...     '<Attribute Name="Epithelial"/></Attributes><Regions><Region Id="7"><Vertices>'
        ...     '<Vertex X="1" Y="2"/><Vertex X="4" Y="2"/><Vertex X="4" Y="5"/></Vertices>'
        ...     '</Region></Regions></Annotation></Annotations>')
        >>> root, anns = parse_aperio(p)
        >>> root["MicronsPerPixel"], anns[0].names, anns[0].regions[0][1].shape
        ('0.25', ['Epithelial'], (3, 2))
    """
    state: dict[str, Any] = {"root": None, "ann": None, "region": None, "in_attributes": 0}
    annotations: list[AperioAnnotation] = []
    coords: list[str] = []
    regions_raw: list[tuple[AperioAnnotation, dict[str, str], list[str]]] = []

    def start(tag: str, attrs: dict[str, str]) -> None:
        if tag == "Vertex":
            if state["region"] is not None:
                try:
                    coords.append(attrs["X"])
                    coords.append(attrs["Y"])
                except KeyError:
                    raise InvalidSourceError(
                        f"{path}: Region {state['region'].get('Id')!r} has a Vertex without X/Y"
                    ) from None
            return
        if state["root"] is None:
            state["root"] = dict(attrs)
        if tag == "Annotation":
            state["ann"] = AperioAnnotation(attrs=dict(attrs))
            annotations.append(state["ann"])
        elif tag == "Attributes":
            state["in_attributes"] += 1
        elif tag == "Attribute":
            if state["ann"] is not None and state["region"] is None and state["in_attributes"] and "Name" in attrs:
                state["ann"].names.append(attrs["Name"])
        elif tag == "Region":
            state["region"] = dict(attrs)
            coords.clear()

    def end(tag: str) -> None:
        if tag == "Vertex":
            return
        if tag == "Attributes":
            state["in_attributes"] -= 1
        elif tag == "Region" and state["region"] is not None:
            if state["ann"] is None:
                new = AperioAnnotation(attrs={})
                state["ann"] = new
                annotations.append(new)
            regions_raw.append((state["ann"], state["region"], list(coords)))
            state["region"] = None
        elif tag == "Annotation":
            state["ann"] = None

    parser = safe_expat_parser(path)
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    feed_expat(parser, path)
    if state["root"] is None:
        raise InvalidSourceError(f"{path}: empty XML document")
    for ann, attrs, flat in regions_raw:
        try:
            xy = np.array(flat, dtype=np.float64).reshape(-1, 2)
        except ValueError:
            raise InvalidSourceError(f"{path}: Region {attrs.get('Id')!r} has a vertex with non-numeric X/Y") from None
        if not np.all(np.isfinite(xy)):
            raise InvalidSourceError(f"{path}: Region {attrs.get('Id')!r} has non-finite coordinates")
        if xy.size and float(np.abs(xy).max()) > MAX_COORDINATE:
            raise InvalidSourceError(f"{path}: Region {attrs.get('Id')!r} has coordinates beyond ±2**31 px")
        ann.regions.append((attrs, xy))
    return state["root"], annotations
