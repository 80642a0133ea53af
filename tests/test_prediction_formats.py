"""Prediction files in the tools' own formats: written as each producer writes them, read back, scored.

Exact formats (HoVer-Net ``.mat``, label TIFF/PNG/``.npy``, Cellpose masks and ``_seg.npy``, QuPath pixel-edge
outlines) must give the written map back pixel for pixel and the same :func:`evaluate_pair` result. Contour formats
(HoVer-Net JSON, CellViT GeoJSON) keep one traced outline per nucleus, filled; the pixels they may change are known
in advance, independently of the reader: those of a nucleus in several 8-connected pieces (only one piece is
traced), the holes of a nucleus (the fill closes them), and the nuclei HoVer-Net leaves out of its dict (an outline
of fewer than 3 points). The tests check that every changed pixel is one of those, and that the scores move by no
more than the nuclei touched: each changed nucleus can change at most one match (matching at IoU > 0.5 is
one-to-one), so TP, FP and FN each move by at most that many.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import tifffile
from PIL import Image
from scipy import ndimage

from nucfuse_datasets._labelmap import relabel
from nucfuse_datasets.datasets.synthetic import generate_tile
from nucfuse_datasets.errors import (
    ArgumentError,
    DependencyNotFoundError,
    InvalidPredictionError,
    UnsafePickleWarning,
    UnsafePredictionError,
)
from nucfuse_datasets.io.predictions import (
    PREDICTION_FORMATS,
    PredictionFile,
    find_predictions,
    read_prediction,
)
from nucfuse_datasets.metrics import evaluate_pair
from tests.prediction_writers import (
    cellvit_features,
    centres_inside,
    hovernet_nuclei,
    qupath_features,
    write_cellpose,
    write_hovernet,
    write_json,
)

SHAPE = (160, 192)
NAME = "tnbc__01_1"  # what nucfuse export-test names the tile's image, so what the tools name its outputs
KEY = ("tnbc", "01_1")
PANNUKE = {1: "Neoplastic", 2: "Inflammatory", 3: "Connective", 4: "Dead", 5: "Epithelial"}
EIGHT = np.ones((3, 3), bool)


@pytest.fixture(scope="module")
def tile():
    """Ground truth, a prediction of it (shifted, some nuclei missing, non-consecutive ids) and its types."""
    rng = np.random.default_rng(7)
    _, gt, _ = generate_tile(*SHAPE, rng, density=1.6, overlapping=0.25)
    pred = np.zeros_like(gt)
    pred[2:, 1:] = gt[:-2, :-1]  # shifted by (2, 1) px
    ids = np.unique(pred)[1:]
    pred[np.isin(pred, ids[::7])] = 0  # every 7th nucleus missed
    pred = (pred * 3).astype(np.int32)  # HoVer-Net's ids need not be consecutive
    types = {int(i): int(rng.integers(1, 6)) for i in np.unique(pred)[1:]}
    return gt, pred, types


def contour_error_pixels(inst: np.ndarray, nuclei: dict[int, dict]) -> np.ndarray:
    """Pixels a filled-contour format may get wrong, from the map alone (see the module docstring)."""
    out = np.zeros(inst.shape, bool)
    for iid in np.unique(inst)[1:]:
        mask = inst == iid
        filled = ndimage.binary_fill_holes(mask)
        if int(iid) not in nuclei or ndimage.label(mask, EIGHT)[1] > 1:
            out |= filled
        out |= filled & ~mask
    return out


def assert_within_contour_error(gt, written, read, nuclei):
    changed = read != written
    allowed = contour_error_pixels(written, nuclei)
    assert not (changed & ~allowed).any(), "pixels changed outside the known contour-fill error"
    touched = len(set(np.unique(written[changed]).tolist()) | set(np.unique(read[changed]).tolist()) - {0})
    a, b = evaluate_pair(gt, written), evaluate_pair(gt, read)
    for field in ("tp", "fp", "fn"):
        assert abs(getattr(a, field) - getattr(b, field)) <= touched, field
    return changed.sum(), touched


# --------------------------------------------------------------------------- HoVer-Net


def test_hovernet_mat_is_exact_with_its_types(tile, tmp_path):
    gt, pred, types = tile
    nuclei = write_hovernet(tmp_path, NAME, pred, types)
    found = find_predictions(tmp_path, [KEY])
    assert found == {KEY: PredictionFile(tmp_path / "mat" / f"{NAME}.mat", "hovernet-mat")}
    p = read_prediction(found[KEY], SHAPE)
    assert p.instances.dtype == np.int32 and np.array_equal(p.instances, pred)
    assert evaluate_pair(gt, p.instances) == evaluate_pair(gt, pred)
    for iid in np.unique(pred)[1:]:  # an id HoVer-Net left out of its dict (outline < 3 points) has no type
        assert p.classes[iid] == (types[int(iid)] if int(iid) in nuclei else 0)
    assert p.classes[0] == 0 and p.class_names is None


def test_hovernet_mat_without_types_and_with_a_class_map(tile, tmp_path):
    _, pred, types = tile
    write_hovernet(tmp_path / "plain", NAME, pred, None)
    p = read_prediction(PredictionFile(tmp_path / "plain" / "mat" / f"{NAME}.mat", "hovernet-mat"), SHAPE)
    assert p.classes is None and np.array_equal(p.instances, pred)
    write_hovernet(tmp_path / "typed", NAME, pred, types)
    pf = PredictionFile(tmp_path / "typed" / "mat" / f"{NAME}.mat", "hovernet-mat")
    mapped = read_prediction(pf, SHAPE, class_map={1: 2, 2: 1, 3: 1, 4: None, 5: 2})
    kept = [i for i in np.unique(pred)[1:] if types[int(i)] != 4]
    assert set(np.unique(mapped.instances)[1:].tolist()) <= set(kept)
    for iid in np.unique(mapped.instances)[1:]:
        if mapped.classes[iid]:
            assert mapped.classes[iid] == {1: 2, 2: 1, 3: 1, 5: 2}[types[int(iid)]]
    with pytest.raises(
        InvalidPredictionError,
        match=r"class\(es\) \['3', '4', '5'\] not in class_map \(the file uses \['1', '2', '3', '4', '5'\]",
    ):
        read_prediction(pf, SHAPE, class_map={1: 1, 2: 2})


def test_hovernet_json_within_the_contour_fill_error(tile, tmp_path):
    gt, pred, types = tile
    nuclei = write_hovernet(tmp_path, NAME, pred, types)
    p = read_prediction(PredictionFile(tmp_path / "json" / f"{NAME}.json", "hovernet-json"), SHAPE)
    assert p.format == "hovernet-json"
    n_changed, touched = assert_within_contour_error(gt, pred, p.instances, nuclei)
    assert n_changed < 0.02 * (pred > 0).sum() and touched < 0.15 * len(nuclei)  # the tile has overlaps: some
    for iid, info in nuclei.items():
        assert p.classes[iid] == info["type"]
    found = find_predictions(tmp_path, [KEY], format="hovernet-json")
    assert found[KEY].path == tmp_path / "json" / f"{NAME}.json"


def test_hovernet_json_is_exact_for_simple_nuclei(tmp_path):
    _, inst, _ = generate_tile(128, 128, np.random.default_rng(3), density=1.0, touching=0.0, overlapping=0.0)
    for iid in np.unique(inst)[1:]:  # the premise: every nucleus one 8-connected piece without holes
        mask = inst == iid
        assert ndimage.label(mask, EIGHT)[1] == 1 and np.array_equal(ndimage.binary_fill_holes(mask), mask)
    write_hovernet(tmp_path, "a", inst, None)
    p = read_prediction(PredictionFile(tmp_path / "json" / "a.json", "hovernet-json"), (128, 128))
    assert np.array_equal(p.instances, inst) and p.classes is None


# --------------------------------------------------------------------------- CellViT and QuPath GeoJSON


@pytest.mark.parametrize("layout", ["cellvit++", "cellvit"])
def test_cellvit_geojson_within_the_contour_fill_error(tile, tmp_path, layout):
    gt, pred, types = tile
    doc = cellvit_features(pred, types, PANNUKE)
    path = tmp_path / (f"{NAME}_cells.geojson" if layout == "cellvit++" else f"{NAME}/cell_detection/cells.geojson")
    write_json(path, doc)
    write_json(
        path.parent / (f"{NAME}_cell_detection.geojson" if layout == "cellvit++" else "cell_detection.geojson"),
        [{"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": [[3.0, 4.0]]}}],
    )
    found = find_predictions(tmp_path, [KEY])
    assert found == {KEY: PredictionFile(path, "geojson")}
    class_map = {name: t for t, name in PANNUKE.items()}
    p = read_prediction(found[KEY], SHAPE, class_map=class_map)
    assert p.format == "cellvit"
    # ids are assigned per polygon in file order (grouped by class): compare as partitions, via the ids' pixels
    nuclei = hovernet_nuclei(pred, types)
    back = np.zeros_like(pred)
    for new in np.unique(p.instances)[1:]:
        olds, counts = np.unique(pred[p.instances == new], return_counts=True)
        old = int(olds[np.argmax(counts)])  # the written nucleus this polygon mostly covers
        back[p.instances == new] = old
        assert old == 0 or p.classes[new] == types[old]
    assert_within_contour_error(gt, pred, back, nuclei)
    assert p.class_names == ("background", *PANNUKE.values())
    plain = read_prediction(found[KEY], SHAPE)
    assert plain.classes is None and plain.names_seen == tuple(sorted({PANNUKE[t] for t in types.values()}))


def test_qupath_pixel_outlines_are_exact(tile, tmp_path):
    gt, pred, types = tile
    names = {i: PANNUKE[t] for i, t in types.items()}
    doc = {"type": "FeatureCollection", "features": qupath_features(pred, names)}
    pieces = sum(f["geometry"]["type"] == "MultiPolygon" for f in doc["features"])
    holes = sum(
        len(r) > 1
        for f in doc["features"]
        if f["geometry"]["type"] == "Polygon"
        for r in [f["geometry"]["coordinates"]]
    )
    assert pieces + holes > 0  # the tile exercises parts and holes
    path = write_json(tmp_path / f"{NAME}.geojson", doc)
    p = read_prediction(find_predictions(tmp_path, [KEY])[KEY], SHAPE, class_map={n: t for t, n in PANNUKE.items()})
    assert p.format == "qupath"
    assert np.array_equal(p.instances, relabel(pred).labels)  # one feature per nucleus, ascending ids
    assert evaluate_pair(gt, p.instances) == evaluate_pair(gt, pred)
    order = np.unique(pred)[1:]
    assert [p.classes[k] for k in range(1, len(order) + 1)] == [types[int(i)] for i in order]
    assert path.exists()


def test_qupath_smooth_polygons_fill_by_pixel_centres(tmp_path):
    rng = np.random.default_rng(11)
    polys, features = [], []
    for _ in range(30):  # StarDist-like stars: 32 rays, float vertices
        cx, cy = rng.uniform(5, 95, 2)
        angles = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        radius = rng.uniform(3, 8) * (1 + 0.2 * rng.standard_normal(32)).clip(0.6, 1.4)
        ring = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], axis=1)
        polys.append(ring)
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [[*ring.tolist(), ring[0].tolist()]]},
                "properties": {"objectType": "detection"},
            }
        )
    # the region the detection ran in (left out beside detections) and a cell whose nucleus is what counts
    features.insert(
        0,
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [100, 0], [100, 90], [0, 90], [0, 0]]]},
            "properties": {"objectType": "annotation"},
        },
    )
    nucleus = [[60.2, 60.7], [66.1, 60.3], [66.4, 66.9], [60.5, 66.2], [60.2, 60.7]]
    features.append(
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [[[50, 50], [80, 50], [80, 80], [50, 80], [50, 50]]]},
            "properties": {"objectType": "cell", "nucleusGeometry": {"type": "Polygon", "coordinates": [nucleus]}},
        }
    )
    polys.append(np.array(nucleus[:-1]))
    path = write_json(tmp_path / "x.geojson", features)
    p = read_prediction(PredictionFile(path, "geojson"), (90, 100))
    expected = np.zeros((90, 100), np.int32)
    for k, ring in enumerate(polys, start=1):  # an independent even-odd test of every pixel centre
        expected[centres_inside([(ring, [])], (90, 100))] = k
    assert p.format == "qupath" and np.array_equal(p.instances, expected)


def test_geojson_conventions_can_be_forced_and_points_are_refused(tile, tmp_path):
    _, pred, types = tile
    path = write_json(tmp_path / "c.geojson", cellvit_features(pred, types, PANNUKE))
    as_qupath = read_prediction(PredictionFile(path, "qupath"), SHAPE)
    assert as_qupath.format == "qupath" and len(np.unique(as_qupath.instances)) - 1 <= 5  # one object per class
    points = write_json(
        tmp_path / "p.geojson",
        [
            {
                "type": "Feature",
                "geometry": {"type": "MultiPoint", "coordinates": [[3.0, 4.0], [10.0, 12.0]]},
                "properties": {},
            }
        ],
    )
    with pytest.raises(InvalidPredictionError, match=r"p\.geojson: 1 feature\(s\) but no polygon"):
        read_prediction(PredictionFile(points, "geojson"), SHAPE)
    with pytest.raises(InvalidPredictionError, match=r"class\(es\) \['Connective', 'Dead', .*map them to None"):
        read_prediction(PredictionFile(path, "geojson"), SHAPE, class_map={"Neoplastic": 1})


def test_instanseg_cells_are_left_out_with_a_none_class(tmp_path):
    nuclei = np.zeros((40, 40), np.int32)
    nuclei[5:10, 5:10], nuclei[20:26, 20:27] = 1, 2
    cells = np.zeros_like(nuclei)
    cells[3:13, 3:13], cells[17:30, 17:30] = 1, 2
    doc = qupath_features(nuclei, {1: "Nuclei", 2: "Nuclei"}) + qupath_features(cells, {1: "Cells", 2: "Cells"})
    path = write_json(tmp_path / "a_instanseg_prediction.geojson", doc)
    p = read_prediction(PredictionFile(path, "geojson"), (40, 40), class_map={"Nuclei": 1, "Cells": None})
    assert np.array_equal(p.instances, nuclei) and p.classes.tolist() == [0, 1, 1]


# --------------------------------------------------------------------------- Cellpose and label images


def test_cellpose_outputs(tile, tmp_path):
    gt, pred, _ = tile
    write_cellpose(tmp_path / "png", NAME, pred, png=True, seg=True)
    write_cellpose(tmp_path / "tif", NAME, pred, png=False, tif=True)
    write_cellpose(tmp_path / "seg", NAME, pred, png=False, seg=True)
    found = find_predictions(tmp_path / "png", [KEY])
    assert found[KEY] == PredictionFile(tmp_path / "png" / f"{NAME}_cp_masks.png", "cellpose")  # the png, no pickle
    assert Image.open(found[KEY].path).mode.startswith("I;16")
    tif = find_predictions(tmp_path / "tif", [KEY])[KEY]
    for pf in (found[KEY], tif):
        p = read_prediction(pf, SHAPE)
        assert np.array_equal(p.instances, pred) and evaluate_pair(gt, p.instances) == evaluate_pair(gt, pred)
    seg = find_predictions(tmp_path / "seg", [KEY])[KEY]
    assert seg.path.name == f"{NAME}_seg.npy"
    with pytest.raises(UnsafePredictionError, match=rf"{NAME}_seg\.npy: .*pickle.*allow_pickle=True.*--save_png"):
        read_prediction(seg, SHAPE)
    with pytest.warns(UnsafePickleWarning, match=f"{NAME}_seg.npy"):
        p = read_prediction(seg, SHAPE, allow_pickle=True)
    assert np.array_equal(p.instances, pred)


def test_cellpose_in_folders_layout(tile, tmp_path):
    _, pred, _ = tile
    write_cellpose(tmp_path / "masks", NAME, pred)
    (tmp_path / "outlines").mkdir()
    assert find_predictions(tmp_path, [KEY])[KEY].path == tmp_path / "masks" / f"{NAME}_cp_masks.png"


@pytest.mark.parametrize("kind", ["tif-int32", "imagej-int16", "png-uint16", "npy", "instanseg-2-planes", "float"])
def test_label_images_are_exact(tile, tmp_path, kind):
    gt, pred, _ = tile
    if kind == "tif-int32":
        path = tmp_path / f"{NAME}.tif"
        tifffile.imwrite(path, pred)
    elif kind == "imagej-int16":  # StarDist's save_tiff_imagej_compatible turns int32 labels into int16
        path = tmp_path / f"{NAME}.tif"
        tifffile.imwrite(path, pred.astype(np.int16), imagej=True, metadata={"axes": "YX"})
    elif kind == "png-uint16":
        path = tmp_path / f"{NAME}_labels.png"
        Image.fromarray(pred.astype(np.uint16)).save(path)
    elif kind == "npy":
        path = tmp_path / f"{KEY[1]}.npy"
        np.save(path, pred.astype(np.uint32))
    elif kind == "instanseg-2-planes":  # nuclei and cells models: plane 0 nuclei, plane 1 cells
        path = tmp_path / f"{NAME}_instanseg_prediction.tiff"
        tifffile.imwrite(path, np.stack([pred, np.where(pred > 0, pred + 1, 0)]).astype(np.int32))
    else:
        path = tmp_path / f"{NAME}_pred.tif"
        tifffile.imwrite(path, pred.astype(np.float32))
    found = find_predictions(tmp_path, [KEY])
    assert found == {KEY: PredictionFile(path, "label")}
    p = read_prediction(found[KEY], SHAPE)
    assert p.classes is None and np.array_equal(p.instances, pred)
    assert evaluate_pair(gt, p.instances) == evaluate_pair(gt, pred)


def test_label_images_of_another_size_are_refused_before_decoding(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 30), np.uint16)).save(path)
    with pytest.raises(InvalidPredictionError, match=r"a\.png: the image is 20×30, the tile is 16×16"):
        read_prediction(PredictionFile(path, "label"), (16, 16))


def test_huge_ids_fit_int32(tmp_path):
    arr = np.array([[0, 2**40], [7, 2**40]], np.uint64)
    np.save(tmp_path / "a.npy", arr)
    p = read_prediction(PredictionFile(tmp_path / "a.npy", "label"), (2, 2))
    assert p.instances.tolist() == [[0, 2], [1, 2]]


# --------------------------------------------------------------------------- matching


def _label(folder, name, value=1, shape=(4, 4)):
    folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / name, np.full(shape, value, np.int32))
    return folder / name


KEYS = [("tnbc", "01_1"), ("tnbc", "01_2"), ("monuseg", "img"), ("cpm17", "img")]


def test_matching_by_subset_id_and_image_name(tmp_path):
    _label(tmp_path, "tnbc__01_1.tif")
    _label(tmp_path, "01_2.tif")  # the bare id, unique
    _label(tmp_path, "TCGA-AB.tif")  # the name the tool was given
    _label(tmp_path, "unrelated.tif")
    found = find_predictions(tmp_path, KEYS, image_names={("monuseg", "img"): "TCGA-AB.png"})
    assert {k: v.path.name for k, v in found.items()} == {
        ("tnbc", "01_1"): "tnbc__01_1.tif",
        ("tnbc", "01_2"): "01_2.tif",
        ("monuseg", "img"): "TCGA-AB.tif",
    }  # ("cpm17", "img") has no file: absent, the caller decides


def test_a_name_of_two_tiles_is_an_error(tmp_path):
    _label(tmp_path, "img.tif")
    with pytest.raises(InvalidPredictionError, match=r"img\.tif: the name 'img' matches several tiles \(cpm17/img"):
        find_predictions(tmp_path, KEYS)


def test_tool_suffixes(tmp_path):
    write_cellpose(tmp_path / "cp", "tnbc__01_1", np.ones((4, 4), np.int32))
    write_cellpose(tmp_path / "cp", "01_2", np.ones((4, 4), np.int32), png=False, seg=True)
    assert {k: v.path.name for k, v in find_predictions(tmp_path / "cp", KEYS).items()} == {
        ("tnbc", "01_1"): "tnbc__01_1_cp_masks.png",
        ("tnbc", "01_2"): "01_2_seg.npy",
    }
    _label(tmp_path / "is", "tnbc__01_1_instanseg_prediction.tiff")
    tifffile.imwrite(tmp_path / "is" / "tnbc__01_1.tif", np.zeros((4, 4, 3), np.uint8))  # its input, beside it
    found = find_predictions(tmp_path / "is", KEYS)
    assert found == {KEYS[0]: PredictionFile(tmp_path / "is" / "tnbc__01_1_instanseg_prediction.tiff", "label")}
    _label(tmp_path / "is", "01_2.tif")  # a plain label image of a tile InstanSeg did not predict: a mixed folder
    with pytest.raises(InvalidPredictionError, match=r"InstanSeg outputs, and label images for other tiles"):
        find_predictions(tmp_path / "is", KEYS)


def test_the_export_test_folder_with_tool_outputs_beside_it(tmp_path):
    # nucfuse export-test wrote images and ground truth; Cellpose then wrote its masks into the same folder
    tifffile.imwrite(tmp_path / "tnbc__01_1.tif", np.zeros((4, 4, 3), np.uint8))
    np.save(tmp_path / "tnbc__01_1.npy", np.ones((4, 4), np.int32))
    (tmp_path / "nucfuse_test.json").write_text(json.dumps({"ids": {}}))
    # the export alone: its .tif images are not predictions, its .npy ground truth scores as a perfect prediction
    assert find_predictions(tmp_path, KEYS) == {KEYS[0]: PredictionFile(tmp_path / "tnbc__01_1.npy", "label")}
    write_cellpose(tmp_path, "tnbc__01_1", np.ones((4, 4), np.int32), seg=True)
    found = find_predictions(tmp_path, KEYS)
    assert found == {KEYS[0]: PredictionFile(tmp_path / "tnbc__01_1_cp_masks.png", "cellpose")}
    (tmp_path / "nucfuse_test.json").unlink()  # images and ground truth copied elsewhere: which one is meant?
    with pytest.raises(InvalidPredictionError, match=r"matches several files .*tnbc__01_1\.npy.*tnbc__01_1\.tif.*own"):
        find_predictions(tmp_path, KEYS, format="label")


def test_mixed_formats_are_an_error(tmp_path):
    write_cellpose(tmp_path / "a", "tnbc__01_1", np.ones((4, 4), np.int32))
    write_json(tmp_path / "a" / "tnbc__01_2.geojson", {"type": "FeatureCollection", "features": []})
    with pytest.raises(InvalidPredictionError, match=r"mixes prediction formats \(Cellpose: tnbc__01_1_cp_masks"):
        find_predictions(tmp_path / "a", KEYS)
    write_cellpose(tmp_path / "b", "tnbc__01_1", np.ones((4, 4), np.int32))
    _label(tmp_path / "b", "tnbc__01_2.tif")
    with pytest.raises(
        InvalidPredictionError,
        match=r"Cellpose outputs, and label images for other tiles "
        r"\(tnbc__01_2\.tif\)",
    ):
        find_predictions(tmp_path / "b", KEYS)
    assert set(find_predictions(tmp_path / "b", KEYS, format="label")) == {KEYS[0], KEYS[1]}


def test_two_files_for_one_tile_are_an_error(tmp_path):
    _label(tmp_path, "tnbc__01_1.tif")
    Image.fromarray(np.ones((4, 4), np.uint16)).save(tmp_path / "01_1_pred.png")
    with pytest.raises(InvalidPredictionError, match=r"tile tnbc/01_1 matches several files \(01_1_pred\.png, tnbc"):
        find_predictions(tmp_path, KEYS)


def test_unknown_layouts_and_unnamed_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("x")
    (tmp_path / "a" / "nucfuse_test.json").write_text("{}")
    with pytest.raises(InvalidPredictionError, match=r"no prediction files recognised \(found: \['notes.txt"):
        find_predictions(tmp_path / "a", KEYS)
    _label(tmp_path / "b", "slide_7.tif")
    with pytest.raises(
        InvalidPredictionError,
        match=r"1 prediction file\(s\) \(e\.g\. slide_7\.tif\) but none is "
        r"named after a tile; expected names like tnbc__01_1",
    ):
        find_predictions(tmp_path / "b", KEYS)
    with pytest.raises(InvalidPredictionError, match="predictions folder not found"):
        find_predictions(tmp_path / "missing", KEYS)
    with pytest.raises(ArgumentError, match="format must be one of"):
        find_predictions(tmp_path / "b", KEYS, format="stardist")
    assert find_predictions(tmp_path / "b", [], format="label") == {}


def test_json_files_are_told_apart_by_content(tmp_path):
    write_json(
        tmp_path / "tnbc__01_1.json", {"mag": None, "nuc": {"1": {"contour": [[0, 0], [2, 0], [2, 2]], "type": None}}}
    )
    found = find_predictions(tmp_path, KEYS)
    assert found[KEYS[0]].format == "hovernet-json"
    write_json(tmp_path / "g" / "tnbc__01_1.json", {"type": "FeatureCollection", "features": []})
    assert find_predictions(tmp_path / "g", KEYS)[KEYS[0]].format == "geojson"


def test_read_prediction_arguments(tmp_path):
    path = _label(tmp_path, "a.tif")
    assert set(PREDICTION_FORMATS) >= {"hovernet-mat", "hovernet-json", "geojson", "cellpose", "label"}
    with pytest.raises(ArgumentError, match="unknown prediction format 'png'"):
        read_prediction(PredictionFile(path, "png"), (4, 4))
    with pytest.raises(ArgumentError, match="shape must be"):
        read_prediction(PredictionFile(path, "label"), (4,))


def test_opencv_missing_is_a_clear_error(tmp_path, monkeypatch):
    path = write_json(tmp_path / "a.json", {"mag": None, "nuc": {"1": {"contour": [[0, 0], [2, 0], [2, 2]]}}})
    monkeypatch.setitem(__import__("sys").modules, "cv2", None)  # import cv2 now raises ImportError
    with pytest.raises(DependencyNotFoundError, match=r"pip install 'nucfuse-datasets\[formats\]'"):
        read_prediction(PredictionFile(path, "hovernet-json"), (4, 4))


def test_reading_writes_nothing(tile, tmp_path):
    _, pred, types = tile
    write_hovernet(tmp_path, NAME, pred, types)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for fmt in ("hovernet-mat", "hovernet-json"):
            read_prediction(find_predictions(tmp_path, [KEY], format=fmt)[KEY], SHAPE)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_tile_without_nuclei_in_every_format(tmp_path):
    empty = np.zeros((24, 24), np.int32)
    write_hovernet(tmp_path / "hn", "a", empty, {})
    write_cellpose(tmp_path / "cp", "a", empty, tif=True, seg=True)
    files = [
        PredictionFile(tmp_path / "hn" / "mat" / "a.mat", "hovernet-mat"),
        PredictionFile(tmp_path / "hn" / "json" / "a.json", "hovernet-json"),
        PredictionFile(write_json(tmp_path / "a.geojson", []), "geojson"),
        PredictionFile(write_json(tmp_path / "b.geojson", {"type": "FeatureCollection", "features": []}), "qupath"),
        PredictionFile(tmp_path / "cp" / "a_cp_masks.png", "cellpose"),
        PredictionFile(tmp_path / "cp" / "a_cp_masks.tif", "cellpose"),
        PredictionFile(tmp_path / "cp" / "a_seg.npy", "cellpose"),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsafePickleWarning)
        for pf in files:
            p = read_prediction(pf, (24, 24), allow_pickle=True)
            assert p.instances.shape == (24, 24) and not p.instances.any(), pf
            assert evaluate_pair(empty, p.instances) == evaluate_pair(empty, empty)


# ---------------------------------------------------------------- real files (read in place, skipped if absent)


def test_real_qupath_geojson_of_puma(tmp_path):
    """PUMA's nuclei were outlined in QuPath: its GeoJSON is a real QuPath export (FeatureCollection, annotations)."""
    from nucfuse_datasets.datasets.puma import NUCLEUS_CLASSES
    from tests.conftest import realdata

    path = sorted(realdata("puma/01_training_dataset_geojson_nuclei").glob("*.geojson"))[0]
    features = json.loads(path.read_text())["features"]
    class_map = {name: k for k, name in enumerate(NUCLEUS_CLASSES, start=1)}
    p = read_prediction(PredictionFile(path, "geojson"), (1024, 1024), class_map=class_map)
    assert p.format == "qupath"
    expected = np.zeros((1024, 1024), np.int32)
    kinds = set()
    for k, feat in enumerate(features, start=1):  # an independent even-odd fill, feature by feature, in the box
        geom = feat["geometry"]
        kinds.add(geom["type"])
        for polygon in [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]:
            rings = [np.asarray(r, float) for r in polygon]
            x0, y0 = np.floor(rings[0].min(axis=0)).astype(int)
            x1, y1 = np.ceil(rings[0].max(axis=0)).astype(int)
            inside = centres_inside([(rings[0], rings[1:])], (y1 - y0, x1 - x0), origin=(x0, y0))
            expected[y0:y1, x0:x1][inside] = k
        assert p.classes[k] == class_map[feat["properties"]["classification"]["name"]]
    assert kinds == {"Polygon", "MultiPolygon"}  # this file has both
    assert np.array_equal(p.instances, expected)


def test_real_model_outputs_shipped_with_nuceval():
    """NucEval's example predictions (label .npy files of a real model on NuInsSeg tiles) read and score exactly."""
    from tests.conftest import realdata

    folder = realdata("nuinsseg/predictions")
    gt_dir = realdata("nuinsseg/human bladder/label masks modify")
    keys = [("nuinsseg", "human_bladder_01"), ("nuinsseg", "human_bladder_02")]
    found = find_predictions(folder, keys)
    assert {k: v.format for k, v in found.items()} == dict.fromkeys(keys, "label")
    for key in keys:
        raw = np.load(folder / f"{key[1]}.npy")
        gt = tifffile.imread(gt_dir / f"{key[1]}.tif")
        p = read_prediction(found[key], raw.shape)
        assert np.array_equal(p.instances, raw)
        assert evaluate_pair(gt, p.instances) == evaluate_pair(gt, raw)
