"""Recognise a prediction folder's format from its layout and names, and match its files to the test tiles.

Layouts recognised (``<name>`` is the tile's name, below):

* ``hovernet-mat``: ``mat/<name>.mat`` (HoVer-Net's ``--output_dir``), or ``<name>.mat`` (its ``mat/`` itself);
* ``hovernet-json``: ``json/<name>.json``, or ``<name>.json`` whose content starts like ``{"mag": ..., "nuc": ...}``;
* ``geojson``: ``<name>.geojson``, ``<name>_cells.geojson`` (CellViT++), ``<name>/cell_detection/cells.geojson``
  (CellViT), ``<name>_instanseg_prediction.geojson`` (InstanSeg), or ``<name>.json`` holding GeoJSON;
* ``cellpose``: ``<name>_cp_masks.png|tif|tiff`` (also under ``masks/``, Cellpose's ``--in_folders``),
  ``<name>_seg.npy``;
* ``label``: ``<name>.tif|tiff|png|npy``, also with a suffix ``_instanseg_prediction``, ``_prediction``, ``_pred``,
  ``_labels``, ``_label``, ``_masks``, ``_mask`` or ``_instances``.

A tile ``(subset, sample_id)`` is matched by the name ``<subset>__<sample_id>`` (what ``nucfuse export-test``
writes, so what a tool run on that folder names its outputs), by ``<sample_id>`` alone (when no other tile has the
same id), or by the stem of the image name the tool was given (``image_names``). HoVer-Net writes ``mat/`` and
``json/`` together: the exact ``.mat`` file is used where a tile has both. Cellpose may write a mask image and a
``_seg.npy`` for one tile: the image is used (PNG before TIFF), which needs no pickle. Plain label-like files
(``.tif``, ``.png``, ``.npy``) beside a tool's outputs (HoVer-Net, GeoJSON, Cellpose, or InstanSeg's
``_instanseg_prediction.tiff``) for the same tiles are taken to be the tool's inputs (the ``export-test`` folder,
where Cellpose and InstanSeg write by default) and ignored. In a folder ``export-test`` wrote (it holds
``nucfuse_test.json``), a ``<name>.tif`` beside a ``<name>.npy`` is the exported image, so the ``.npy`` ground truth
(or a tool's output beside it) is what is read. An explicit ``format`` reads only that format's files; ``"label"`` then
includes Cellpose's mask images.

Errors (:class:`~nucfuse_datasets.errors.InvalidPredictionError`, naming the files): outputs of two tools for the
tiles, label files for tiles the tool's outputs do not cover (a mixed folder), two files for one tile, a file whose
name matches two tiles, and a folder where nothing is recognised or nothing is named after a tile.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from nucfuse_datasets.errors import ArgumentError, InvalidPredictionError
from nucfuse_datasets.io.predictions._common import PREDICTION_FORMATS, PredictionFile

__all__ = ["EXPORT_MARKER", "IMAGE_SUFFIXES", "LABEL_SUFFIXES", "find_predictions"]

Key = tuple[str, str]
#: Extensions of the images a tool may have been given (stripped from ``image_names``).
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".svs", ".npy")
#: Name endings of label files that are stripped to find the tile's name.
LABEL_SUFFIXES = (
    "_instanseg_prediction",
    "_prediction",
    "_pred",
    "_labels",
    "_label",
    "_masks",
    "_mask",
    "_instances",
)
_GEOJSON_SUFFIXES = ("_cells", "_instanseg_prediction")
_RASTER = (".tif", ".tiff", ".png", ".npy")
_FAMILY = {
    "hovernet-mat": "HoVer-Net",
    "hovernet-json": "HoVer-Net",
    "geojson": "GeoJSON",
    "cellpose": "Cellpose",
    "label": "label",
}
_SNIFF_BYTES = 1 << 16
#: The file ``nucfuse export-test`` writes beside the tiles' ``.tif`` images and ``.npy`` ground truth.
EXPORT_MARKER = "nucfuse_test.json"


@dataclass(frozen=True)
class _Candidate:
    path: Path
    format: str  # hovernet-mat, hovernet-json, geojson, cellpose, label
    stems: tuple[str, ...]  # the names it may match, most specific first
    rank: int = 0  # within a tile, the lowest rank wins (HoVer-Net: mat < json; Cellpose: png < tif < _seg.npy)
    family: str = ""  # the tool that writes it ("label" for a plain label image)

    def __post_init__(self) -> None:
        if not self.family:
            object.__setattr__(self, "family", _FAMILY[self.format])


def _sniff_json(path: Path) -> str | None:
    """``"hovernet-json"``, ``"geojson"`` or ``None`` from the first bytes of a ``.json`` file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES).decode("utf-8", "replace")
    except OSError:
        return None
    geo = re.search(r'"type"\s*:\s*"Feature(Collection)?"', head)
    nuc = re.search(r'"nuc"\s*:\s*\{', head)
    if geo and (nuc is None or geo.start() < nuc.start()):
        return "geojson"
    if nuc or re.match(r'\s*\{\s*"mag"\s*:', head):
        return "hovernet-json"
    return None


def _strip(stem: str, suffixes: Sequence[str]) -> tuple[str, ...]:
    return (stem, *[stem[: -len(s)] for s in suffixes if stem.endswith(s) and len(stem) > len(s)])


def _classify(path: Path) -> _Candidate | None:
    """What a file directly in the predictions folder is, by its name (and a ``.json`` file's first bytes)."""
    name, low = path.name, path.name.lower()
    stem, suffix = path.stem, path.suffix.lower()
    if suffix == ".mat":
        return _Candidate(path, "hovernet-mat", (stem,))
    if suffix == ".geojson":
        if low.endswith("cell_detection.geojson"):  # CellViT's centroids: not outlines
            return None
        return _Candidate(path, "geojson", _strip(stem, _GEOJSON_SUFFIXES))
    if suffix == ".json":
        kind = _sniff_json(path)
        rank = 1 if kind == "hovernet-json" else 0
        return None if kind is None else _Candidate(path, kind, _strip(stem, _GEOJSON_SUFFIXES), rank=rank)
    if low.endswith("_seg.npy"):
        return _Candidate(path, "cellpose", (name[: -len("_seg.npy")],), rank=2)
    m = re.match(r"(?s)(.+)_cp_masks\.(png|tif|tiff)$", name, flags=re.IGNORECASE)
    if m:
        return _Candidate(path, "cellpose", (m.group(1),), rank=0 if m.group(2).lower() == "png" else 1)
    if suffix in _RASTER:
        tool = "InstanSeg" if stem.endswith("_instanseg_prediction") else "label"  # beside its input images
        return _Candidate(path, "label", _strip(stem, LABEL_SUFFIXES), family=tool)
    return None


def _visible(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith((".", "~")))
    except OSError as exc:
        raise InvalidPredictionError(f"{folder}: cannot list the predictions folder ({exc})") from None


def _candidates(folder: Path) -> list[_Candidate]:
    """Every recognised file of the folder's known layouts."""
    out: list[_Candidate] = []
    visible = _visible(folder)
    exported = (folder / EXPORT_MARKER).is_file()
    npy_stems = {p.stem for p in visible if p.suffix.lower() == ".npy"} if exported else set()
    for p in visible:
        if p.is_file():
            cand = _classify(p)
            if cand is None:
                continue
            if cand.family == "label" and p.suffix.lower() == ".tif" and p.stem in npy_stems and len(cand.stems) == 1:
                continue  # the image of an image/ground-truth pair export-test wrote
            out.append(cand)
        elif p.is_dir() and p.name == "mat":
            out += [_Candidate(f, "hovernet-mat", (f.stem,)) for f in _visible(p) if f.suffix.lower() == ".mat"]
        elif p.is_dir() and p.name == "json":
            out += [
                _Candidate(f, "hovernet-json", (f.stem,), rank=1) for f in _visible(p) if f.suffix.lower() == ".json"
            ]
        elif p.is_dir() and p.name == "masks":
            out += [c for f in _visible(p) if (c := _classify(f)) is not None and c.format == "cellpose"]
        elif p.is_dir() and (p / "cell_detection" / "cells.geojson").is_file():
            out.append(_Candidate(p / "cell_detection" / "cells.geojson", "geojson", (p.name,)))
    return out


def _index(keys: Sequence[Key], image_names: Mapping[Key, str] | None) -> dict[str, set[Key]]:
    """Every name a tile may go by -> the tiles that go by it."""
    index: dict[str, set[Key]] = {}
    for key in keys:
        subset, sid = key
        names = [f"{subset}__{sid}", sid]
        if image_names and key in image_names:
            image = Path(str(image_names[key])).name
            names.append(image[: -len(Path(image).suffix)] if Path(image).suffix.lower() in IMAGE_SUFFIXES else image)
        for name in names:
            index.setdefault(name, set()).add(key)
    return index


def _match(cand: _Candidate, index: dict[str, set[Key]]) -> Key | None:
    """The tile a file belongs to (the most specific name that names one); ambiguity is an error."""
    for stem in cand.stems:
        tiles = index.get(stem)
        if not tiles:
            continue
        if len(tiles) > 1:
            shown = ", ".join(f"{s}/{i}" for s, i in sorted(tiles))
            raise InvalidPredictionError(
                f"{cand.path}: the name {stem!r} matches several tiles ({shown}); name the file "
                "<subset>__<sample_id> (the names nucfuse export-test writes)"
            )
        return next(iter(tiles))
    return None


def _choose(folder: Path, matched: list[tuple[Key, _Candidate]]) -> list[tuple[Key, _Candidate]]:
    """The matched files of the folder's one tool; refuse two tools, or label files for tiles the tool lacks."""
    by_family: dict[str, list[tuple[Key, _Candidate]]] = {}
    for key, cand in matched:
        by_family.setdefault(cand.family, []).append((key, cand))
    tools = sorted(f for f in by_family if f != "label")
    if len(tools) > 1:
        examples = "; ".join(f"{f}: {by_family[f][0][1].path.name}" for f in tools)
        raise InvalidPredictionError(
            f"{folder}: the folder mixes prediction formats ({examples}); keep one tool's outputs per folder, or "
            "pass format= to choose one"
        )
    if not tools:
        return by_family["label"]
    chosen = by_family[tools[0]]
    covered = {key for key, _ in chosen}
    extra = [c.path.name for key, c in by_family.get("label", []) if key not in covered]
    if extra:
        raise InvalidPredictionError(
            f"{folder}: the folder mixes formats: {tools[0]} outputs, and label images for other tiles "
            f"({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''}); keep one format per folder, or pass "
            "format= to choose one"
        )
    return chosen  # label files of the same tiles are the tool's inputs (e.g. the export-test folder)


def find_predictions(
    folder: str | Path,
    keys: Sequence[Key],
    *,
    format: str | None = None,
    image_names: Mapping[Key, str] | None = None,
) -> dict[Key, PredictionFile]:
    """Find each tile's prediction file in a folder written by HoVer-Net, CellViT, QuPath, Cellpose, StarDist...

    Args:
        folder: the predictions folder (the tool's output folder).
        keys: the tiles, as ``(subset, sample_id)``.
        format: one of :data:`~nucfuse_datasets.io.predictions.PREDICTION_FORMATS`, or ``None`` to recognise it.
        image_names: optional ``{key: name of the image the tool was given}`` (e.g. an original file name);
            its stem is matched too.

    Returns:
        ``{key: PredictionFile}`` for the tiles that have a file; tiles without one are absent (the caller
        decides whether that is an error).

    Raises:
        InvalidPredictionError: no such folder; nothing recognised, or nothing named after a tile; a mixed folder;
            two files for one tile; a file whose name matches two tiles. The message names the files.
        ArgumentError: an unknown ``format``.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> for name in ("tnbc__01_1.tif", "tnbc__01_1_cp_masks.png", "01_2_cp_masks.png", "notes.txt"):
        ...     _ = (folder / name).write_bytes(b"")  # an input image beside Cellpose's masks, and a stray file
        >>> found = find_predictions(folder, [("tnbc", "01_1"), ("tnbc", "01_2"), ("tnbc", "01_3")])
        >>> {sid: (pf.path.name, pf.format) for (_, sid), pf in found.items()}
        {'01_1': ('tnbc__01_1_cp_masks.png', 'cellpose'), '01_2': ('01_2_cp_masks.png', 'cellpose')}
    """
    if format is not None and format not in PREDICTION_FORMATS:
        raise ArgumentError(f"format must be one of {list(PREDICTION_FORMATS)} or None, got {format!r}")
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InvalidPredictionError(f"{folder}: predictions folder not found")
    index = _index(keys, image_names)
    found = _candidates(folder)
    base = {"cellvit": "geojson", "qupath": "geojson"}.get(format or "", format)
    if base == "label":  # Cellpose's mask images are label images too (its pickled _seg.npy is not)
        found = [
            _Candidate(c.path, "label", (*c.stems, *_strip(c.path.stem, ("_cp_masks",))[1:]), rank=c.rank)
            if c.format == "cellpose" and c.rank < 2
            else c
            for c in found
        ]
    if base is not None and base.startswith("hovernet"):  # the format chosen, not the preferred one
        found = [dataclasses.replace(c, rank=0) for c in found]
    if base is not None:
        found = [c for c in found if c.format == base]
    if not found:
        seen = [p.name + ("/" if p.is_dir() else "") for p in _visible(folder)]
        raise InvalidPredictionError(
            f"{folder}: no {format + ' ' if format else ''}prediction files recognised (found: "
            f"{seen[:8] or 'nothing'}{' ...' if len(seen) > 8 else ''}); expected HoVer-Net's mat/ or json/, "
            "*.geojson, *_cp_masks.png or label images <name>.tif|png|npy, with <name> = <subset>__<sample_id>"
        )
    matched = [(key, cand) for cand in found if (key := _match(cand, index)) is not None]
    if not matched:
        if not keys:
            return {}
        raise InvalidPredictionError(
            f"{folder}: {len(found)} prediction file(s) (e.g. {', '.join(c.path.name for c in found[:3])}) but "
            f"none is named after a tile; expected names like {keys[0][0]}__{keys[0][1]} or {keys[0][1]} (with the "
            "tool's suffix, e.g. _cp_masks.png)"
        )
    order = {key: i for i, key in enumerate(keys)}
    best: dict[Key, list[_Candidate]] = {}
    for key, cand in matched if base is not None else _choose(folder, matched):
        current = best.setdefault(key, [])
        if any(c.path == cand.path for c in current) or (current and cand.rank > current[0].rank):
            continue
        if current and cand.rank < current[0].rank:
            current.clear()
        current.append(cand)
    result: dict[Key, PredictionFile] = {}
    for key, cands in sorted(best.items(), key=lambda item: order[item[0]]):
        if len(cands) > 1:
            names = ", ".join(str(c.path.relative_to(folder)) for c in cands)
            raise InvalidPredictionError(
                f"{folder}: tile {key[0]}/{key[1]} matches several files ({names}); keep one per tile (is this "
                "the export-test folder itself, with images and ground truth? Write predictions to their own folder)"
            )
        result[key] = PredictionFile(cands[0].path, format or cands[0].format)
    return result
