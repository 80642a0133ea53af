"""Write known label maps exactly as the segmentation tools write their outputs (for the prediction-format tests).

Written from the producers' documented behaviour, read in their sources (facts only, no code copied):

* HoVer-Net (vqdang/hover_net ``infer/tile.py``, ``models/hovernet/post_proc.py``, ``infer/base.py``): per id of
  the instance map, ascending: the bounding box ``[[rmin, cmin], [rmax + 1, cmax + 1]]``, the first contour of
  ``cv2.findContours(crop, RETR_TREE, CHAIN_APPROX_SIMPLE)`` on the cropped ``uint8`` mask shifted by the box's
  corner (ids whose contour has fewer than 3 points are left out of the dict, not of the map), the moments'
  centroid (x, y), the type. ``mat/<name>.mat``: ``inst_map``, ``inst_uid`` (N×1), ``inst_type`` (N×1, only with
  types), ``inst_centroid`` (N×2) by ``scipy.io.savemat``; ``json/<name>.json``: ``{"mag": None, "nuc": {id: ...}}``
  by ``json.dump``.
* CellViT (TIO-IKIM/CellViT ``convert_geojson``, CellViT++ ``_convert_json_geojson``): the same contours; per type
  in ascending order one Feature (``"id"`` a uuid, MultiPolygon of ``[contour + [contour[0]]]`` per cell,
  ``properties: {"objectType": "annotation", "classification": {"name", "color"}}``); the file is the bare list.
* QuPath (``exportObjectsToGeoJson``): one Feature per object, pixel-corner vertices (an outline traced along pixel
  edges), ``objectType`` ``"detection"``, a ``FeatureCollection``.
* Cellpose (MouseLand/cellpose ``io.save_masks``, ``io.masks_flows_to_seg``): ``<name>_cp_masks.png`` = ``uint16``
  by ``cv2.imwrite``; ``<name>_cp_masks.tif`` by ``tifffile.imwrite(compression="zlib")``; ``<name>_seg.npy`` =
  ``np.save`` of a dict (``outlines``, ``masks`` as ``uint16``, ``chan_choose``, ``ismanual``, ``filename``,
  ``flows``, ``diameter``).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import cv2
import numpy as np
import scipy.io
import tifffile

PANNUKE_COLOURS = {1: [255, 0, 0], 2: [34, 221, 77], 3: [35, 92, 236], 4: [254, 255, 0], 5: [255, 159, 68]}


def hovernet_nuclei(inst: np.ndarray, types: dict[int, int] | None) -> dict[int, dict]:
    """HoVer-Net's per-nucleus dict for an instance map (ids ascending)."""
    out = {}
    for iid in np.unique(inst)[1:]:
        mask = inst == iid
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        rmin, rmax, cmin, cmax = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        crop = mask[rmin:rmax, cmin:cmax].astype(np.uint8)
        moments = cv2.moments(crop)
        contours, _ = cv2.findContours(crop, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
        contour = np.squeeze(contours[0].astype(np.int32))
        if contour.ndim != 2 or contour.shape[0] < 3:
            continue
        contour[:, 0] += cmin
        contour[:, 1] += rmin
        centroid = [moments["m10"] / moments["m00"] + cmin, moments["m01"] / moments["m00"] + rmin]
        out[int(iid)] = {
            "bbox": [[int(rmin), int(cmin)], [int(rmax), int(cmax)]],
            "centroid": centroid,
            "contour": contour.tolist(),
            "type_prob": None if types is None else 0.9,
            "type": None if types is None else int(types.get(int(iid), 0)),
        }
    return out


def write_hovernet(out_dir: Path, name: str, inst: np.ndarray, types: dict[int, int] | None) -> dict[int, dict]:
    """HoVer-Net's tile-mode ``mat/<name>.mat`` and ``json/<name>.json``; returns the nucleus dict."""
    nuclei = hovernet_nuclei(inst, types)
    (out_dir / "mat").mkdir(parents=True, exist_ok=True)
    (out_dir / "json").mkdir(parents=True, exist_ok=True)
    uids = np.array(list(nuclei), dtype=np.int32)[:, None]
    mat = {
        "inst_map": inst.astype(np.int32),
        "inst_uid": uids,
        "inst_type": np.array([v["type"] for v in nuclei.values()])[:, None],
        "inst_centroid": np.array([v["centroid"] for v in nuclei.values()]),
    }
    if types is None:
        mat.pop("inst_type")
    scipy.io.savemat(out_dir / "mat" / f"{name}.mat", mat)
    with open(out_dir / "json" / f"{name}.json", "w") as fh:
        json.dump({"mag": None, "nuc": nuclei}, fh)
    return nuclei


def cellvit_features(inst: np.ndarray, types: dict[int, int], names: dict[int, str]) -> list[dict]:
    """CellViT's segmentation GeoJSON (a list: one MultiPolygon feature per type, ascending)."""
    nuclei = hovernet_nuclei(inst, types)
    features = []
    for t in sorted({v["type"] for v in nuclei.values()}):
        polygons = [[v["contour"] + [v["contour"][0]]] for v in nuclei.values() if v["type"] == t]
        features.append(
            {
                "type": "Feature",
                "id": str(uuid.uuid4()),
                "geometry": {"type": "MultiPolygon", "coordinates": polygons},
                "properties": {
                    "objectType": "annotation",
                    "classification": {"name": names[t], "color": PANNUKE_COLOURS.get(t, [0, 0, 0])},
                },
            }
        )
    return features


# --------------------------------------------------------------------------- pixel-edge outlines (QuPath)


def _inside(poly: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Even-odd test of points against a closed polygon (an independent point-in-polygon, for the checks)."""
    inside = np.zeros(x.shape, bool)
    xs, ys = poly[:, 0], poly[:, 1]
    for i in range(len(poly)):
        x0, y0, x1, y1 = xs[i - 1], ys[i - 1], xs[i], ys[i]
        crosses = (y0 > y) != (y1 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            xc = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (x < xc)
    return inside


def centres_inside(
    polygons: list[tuple[np.ndarray, list[np.ndarray]]], shape: tuple[int, int], origin: tuple[int, int] = (0, 0)
) -> np.ndarray:
    """Pixels whose centre (c + 0.5, r + 0.5) is inside any (exterior minus holes): the pixel-corner convention.

    ``origin`` = (x0, y0): the window's top-left pixel, for a window of ``shape`` cut out of a larger image.
    """
    r, c = np.mgrid[: shape[0], : shape[1]]
    x, y = c + origin[0] + 0.5, r + origin[1] + 0.5
    out = np.zeros(shape, bool)
    for exterior, holes in polygons:
        part = _inside(exterior, x, y)
        for hole in holes:
            part &= ~_inside(hole, x, y)
        out |= part
    return out


def pixel_outlines(mask: np.ndarray) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """Polygons along the pixel edges of a mask, QuPath's way: (exterior, holes), vertices at pixel corners (x, y).

    Edges run with the pixel on their right (clockwise on screen); at a corner where two pixels touch diagonally the
    trace turns right, so such pixels become separate parts. Collinear vertices are dropped.
    """
    pad = np.pad(mask.astype(bool), 1)
    edges: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for r, c in zip(*np.nonzero(pad), strict=True):
        x, y = c - 1, r - 1  # corner coordinates in the unpadded image
        if not pad[r - 1, c]:
            edges.setdefault((x, y), []).append((x + 1, y))
        if not pad[r, c + 1]:
            edges.setdefault((x + 1, y), []).append((x + 1, y + 1))
        if not pad[r + 1, c]:
            edges.setdefault((x + 1, y + 1), []).append((x, y + 1))
        if not pad[r, c - 1]:
            edges.setdefault((x, y + 1), []).append((x, y))
    rings = []
    while edges:
        start = next(iter(edges))
        ring = [start]
        prev, cur = start, edges[start].pop()
        if not edges[start]:
            del edges[start]
        while cur != start:
            ring.append(cur)
            options = edges[cur]
            d = (cur[0] - prev[0], cur[1] - prev[1])
            right = (-d[1], d[0])  # a right turn on screen (y down)
            nxt = next((o for o in options if (o[0] - cur[0], o[1] - cur[1]) == right), options[0])
            options.remove(nxt)
            if not options:
                del edges[cur]
            prev, cur = cur, nxt
        pts = np.array(ring, float)
        a, b = pts - np.roll(pts, 1, axis=0), np.roll(pts, -1, axis=0) - pts
        keep = np.flatnonzero(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0] != 0)  # turns, not points of a straight run
        rings.append(pts[keep])
    area = [_area(p) for p in rings]
    exteriors = [(p, []) for p, a in zip(rings, area, strict=True) if a > 0]
    for p, a in zip(rings, area, strict=True):
        if a < 0:  # a hole: the background pixel left of its first edge lies inside its exterior
            d = (p[1] - p[0]) / np.abs(p[1] - p[0]).max()  # a unit step along the (axis-parallel) first edge
            x, y = p[0] + 0.5 * d + 0.5 * np.array([d[1], -d[0]])  # the centre of the pixel on its left
            owners = [e for e in exteriors if _inside(e[0], np.array([x]), np.array([y]))[0]]
            min(owners, key=lambda e: _area(e[0]))[1].append(p)
    return exteriors


def _area(p: np.ndarray) -> float:
    """Signed shoelace area (positive for a clockwise ring on screen)."""
    return 0.5 * float(np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1]))


def qupath_features(inst: np.ndarray, names: dict[int, str] | None, object_type: str = "detection") -> list[dict]:
    """One QuPath feature per instance (ascending ids): pixel-edge outlines, a MultiPolygon when in pieces."""
    features = []
    for iid in np.unique(inst)[1:]:
        polys = pixel_outlines(inst == iid)
        rings = [[_closed(e), *[_closed(h) for h in holes]] for e, holes in polys]
        geometry = (
            {"type": "Polygon", "coordinates": rings[0]}
            if len(rings) == 1
            else {
                "type": "MultiPolygon",
                "coordinates": rings,
            }
        )
        props: dict = {"objectType": object_type}
        if names is not None:
            props["classification"] = {"name": names[int(iid)], "color": [200, 0, 0]}
        features.append({"type": "Feature", "id": str(uuid.uuid4()), "geometry": geometry, "properties": props})
    return features


def _closed(ring: np.ndarray) -> list[list[float]]:
    pts = ring.tolist()
    return [*pts, pts[0]]


def write_json(path: Path, doc: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


# --------------------------------------------------------------------------- Cellpose


def write_cellpose(folder: Path, name: str, masks: np.ndarray, *, png=True, tif=False, seg=False) -> None:
    """Cellpose's outputs for the image ``<name>.<ext>``."""
    folder.mkdir(parents=True, exist_ok=True)
    if png:
        cv2.imwrite(str(folder / f"{name}_cp_masks.png"), masks.astype(np.uint16))
    if tif:
        tifffile.imwrite(folder / f"{name}_cp_masks.tif", masks, compression="zlib")
    if seg:
        outlines = np.zeros_like(masks)
        dat = {
            "outlines": outlines.astype(np.uint16),
            "masks": masks.astype(np.uint16),
            "chan_choose": [0, 0],
            "ismanual": np.zeros(int(masks.max()), bool),
            "filename": str(folder / f"{name}.tif"),
            "flows": [np.zeros((1, *masks.shape, 3), np.uint8)],
            "diameter": np.nan,
        }
        np.save(folder / f"{name}_seg.npy", dat)
