"""PUMA parser quirks: MultiPolygons, holes, the .tiff ROI, class map, skipped features, malformed GeoJSON."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from skimage.draw import polygon as fill

import nucfuse_datasets as nf
from nucfuse_datasets.datasets.puma import NUCLEUS_CLASSES, PUMA, parse_nuclei_geojson, rasterize_features
from nucfuse_datasets.errors import InvalidSourceError
from nucfuse_datasets.io.store import PreparedStore
from tests.conftest import REALDATA, copy_native, realdata
from tests.fakedata import puma as fake_puma


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from tests.fakedata import generators

    fake = generators()["puma"](tmp_path_factory.mktemp("fake-puma"))
    root = tmp_path_factory.mktemp("root")
    copy_native(fake, root, "puma")
    return nf.get_dataset("puma", root=root, progress=False), fake


def _inside(xy: np.ndarray, shape=(64, 64)) -> tuple[np.ndarray, np.ndarray]:
    return fill(xy[:, 1], xy[:, 0], shape=shape)


def test_rois_ids_and_meta(prepared):
    ds, _ = prepared
    expected = sorted(fake_puma.stem(k, i) for k, i in fake_puma.ROIS)
    assert ds.sample_ids == expected
    roi103 = ds.meta(ds.index_of("training_set_metastatic_roi_103"))
    assert roi103.original_file.endswith("training_set_metastatic_roi_103.tiff")
    assert roi103.extra == {"melanoma": "metastatic", "roi": 103}
    assert ds.meta(ds.index_of("training_set_primary_roi_002")).extra["melanoma"] == "primary"
    assert ds.class_names == ("background", *NUCLEUS_CLASSES) and len(ds.class_names) == 11
    assert PUMA.test_split is None and ds.splits == ("all",)


def test_rgba_rois_become_rgb(prepared):
    ds, _ = prepared
    s = ds[0]
    assert s.image.shape == (64, 64, 3) and s.image.dtype == np.uint8


def test_multipolygon_is_one_instance_and_holes_stay_empty(prepared):
    ds, _ = prepared
    for i, (kind, idx) in enumerate(fake_puma.ROIS):
        s = ds[ds.index_of(fake_puma.stem(kind, idx))]
        polys = fake_puma.polygons(i)
        ids_a = np.unique(s.instances[_inside(polys[1])])
        ids_b = np.unique(s.instances[_inside(polys[2])])
        assert ids_a.tolist() == ids_b.tolist() and ids_a.size == 1 and ids_a[0] > 0
        hole = fake_puma.hole_of(polys[3])
        rr, cc = _inside(hole)
        assert rr.size > 0 and not s.instances[rr, cc].any()
        ring_ids = np.unique(s.instances[_inside(polys[3])])
        assert ring_ids.size == 2 and ring_ids[0] == 0  # the hole (0) and the nucleus
        assert s.n_instances == fake_puma.NUCLEI_PER_ROI


def test_class_map_follows_feature_order(prepared):
    ds, _ = prepared
    for i, (kind, idx) in enumerate(fake_puma.ROIS):
        s = ds[ds.index_of(fake_puma.stem(kind, idx))]
        want = [NUCLEUS_CLASSES.index(NUCLEUS_CLASSES[(i + j) % 10]) + 1 for j in range(5)]
        assert s.classes.tolist() == [0, *want]
        assert s.class_names[s.classes[1]] == NUCLEUS_CLASSES[i % 10]


def test_skipped_features_are_counted(prepared):
    ds, _ = prepared
    skipped = PreparedStore(ds.store_path).manifest["skipped"]
    n = len(fake_puma.ROIS)
    assert skipped == {k: v * n for k, v in fake_puma.SKIPPED_PER_ROI.items()}


def test_parse_geojson_variants(tmp_path):
    sq = [[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]]
    feat = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [sq]}, "properties": {}}
    p = tmp_path / "a_nuclei.geojson"
    p.write_text(json.dumps([feat, feat]))  # a bare list of features
    assert [name for name, _ in parse_nuclei_geojson(p)] == [None, None]
    p.write_text(json.dumps(feat))  # a single Feature
    assert len(parse_nuclei_geojson(p)) == 1
    point = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}, "properties": {}}
    p.write_text(json.dumps({"type": "FeatureCollection", "features": [point, feat]}))
    reasons: list[str] = []
    assert len(parse_nuclei_geojson(p, skip=reasons.append)) == 1
    assert reasons == ["feature with a Point geometry (not a polygon)"]


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        json.dumps({"type": "Topology"}),
        json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": 3}]}),
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[["a", "b"]]]}}],
            }
        ),
        json.dumps({"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": []}}),
        "[" * 100000 + "]" * 100000,  # nesting deep enough to exhaust the recursion limit
    ],
)
def test_malformed_geojson_names_the_file(tmp_path, text):
    p = tmp_path / "training_set_primary_roi_001_nuclei.geojson"
    p.write_text(text)
    with pytest.raises(InvalidSourceError, match=r"roi_001_nuclei\.geojson"):
        parse_nuclei_geojson(p)


def test_unknown_class_is_skipped_and_case_is_ignored():
    sq = np.array([[0, 0], [3, 0], [3, 3], [0, 3]], float)
    reasons: list[str] = []
    lab, cls = rasterize_features(
        [("Nuclei_Lymphocyte ", [(sq, [])]), ("nuclei_alien", [(sq + 4, [])]), (None, [(sq + 6, [])])],
        (12, 12),
        skip=reasons.append,
    )
    assert cls == {1: NUCLEUS_CLASSES.index("nuclei_lymphocyte") + 1}
    assert sorted(np.unique(lab).tolist()) == [0, 1]
    assert reasons == ["feature of non-nucleus class 'nuclei_alien'", "feature without a class"]


def test_later_feature_wins_and_fully_hidden_is_dropped():
    sq = np.array([[0, 0], [5, 0], [5, 5], [0, 5]], float)
    lab, _ = rasterize_features(
        [("nuclei_tumor", [(sq, [])]), ("nuclei_stroma", [(sq - 1, [])]), ("nuclei_tumor", [(sq + 2, [])])],
        (10, 10),
    )
    assert lab[3, 3] == 3 and lab[0, 0] == 2
    lab2, cls2 = rasterize_features([("nuclei_tumor", [(sq, [])]), ("nuclei_stroma", [(sq, [])])], (10, 10))
    assert cls2 == {2: 2} and set(np.unique(lab2).tolist()) == {0, 2}


def test_malformed_file_through_the_api(tmp_path, fake_factory):
    fake = fake_factory("puma")
    target = copy_native(fake, tmp_path, "puma")
    victim = target / "01_training_dataset_geojson_nuclei" / "training_set_primary_roi_002_nuclei.geojson"
    victim.write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(InvalidSourceError, match=r"training_set_primary_roi_002_nuclei\.geojson"):
        nf.get_dataset("puma", root=tmp_path, progress=False)
    assert not [p for p in target.iterdir() if p.name.startswith(("prepared", ".tmp-"))]


def test_unpaired_roi_is_refused(tmp_path, fake_factory):
    target = copy_native(fake_factory("puma"), tmp_path, "puma")
    (target / "01_training_dataset_geojson_nuclei" / "training_set_metastatic_roi_001_nuclei.geojson").unlink()
    with pytest.raises(InvalidSourceError, match="training_set_metastatic_roi_001"):
        nf.get_dataset("puma", root=tmp_path, progress=False)


def test_roi_as_tif_and_tiff_is_refused(tmp_path, fake_factory):
    target = copy_native(fake_factory("puma"), tmp_path, "puma")
    rois = target / "01_training_dataset_tif_ROIs"
    shutil.copyfile(rois / "training_set_primary_roi_001.tif", rois / "training_set_primary_roi_001.tiff")
    with pytest.raises(InvalidSourceError, match="both"):
        nf.get_dataset("puma", root=tmp_path, progress=False)


def test_files_without_top_folders_are_found(tmp_path, fake_factory):
    fake = fake_factory("puma")
    flat = tmp_path / "puma" / "unpacked"
    flat.mkdir(parents=True)
    for sub in ("01_training_dataset_tif_ROIs", "01_training_dataset_geojson_nuclei"):
        for p in (fake.native_dir / sub).iterdir():
            shutil.copyfile(p, flat / p.name)
    ds = nf.get_dataset("puma", root=tmp_path, progress=False)
    assert len(ds) == fake.tiles["all"]


def test_tissue_archive_is_optional_and_not_used():
    tissue = [r for r in PUMA.resources if r.key == "tissue"]
    assert len(tissue) == 1 and tissue[0].required is False
    assert tissue[0].sha256 == "fc2835135cc28324f52eac131327f0f12c554c0b1f334a108bf4b65e0f18c42b"
    assert PUMA.active_resources(PUMA.__new__(PUMA)) == tuple(r for r in PUMA.resources if r.key != "tissue")
    assert {r.key: r.sha256[:8] for r in PUMA.resources if r.required} == {"rois": "af48b879", "nuclei": "eda27122"}


def test_expected_counts_report_the_paper_row():
    assert PUMA.paper.tiles == 205 and PUMA.paper.nuclei == 97187
    diffs = PUMA.__new__(PUMA).check_counts({"all": {"tiles": 206, "nuclei": 97429}})
    assert [d["what"] for d in diffs] == ["tiles"]  # 97,429 is within the documented 0.5 %


def test_class_names_match_the_real_geojsons():
    # expectations from the real PUMA release files (../shared/realdata/puma) read with json alone, and from the
    # team's reference list of the 10 nucleus classes, not from the library's own table
    src = realdata("puma") / "01_training_dataset_geojson_nuclei"
    files = sorted(src.glob("*_nuclei.geojson"))
    assert len(files) == 6
    per_file = {}
    for path in files:
        features = json.loads(path.read_text())["features"]
        per_file[path] = [f["properties"]["classification"]["name"] for f in features]
    seen = {name for names in per_file.values() for name in names}
    assert seen <= set(PUMA.class_names[1:]) and len(seen) == 9  # the six files hold 9 of the 10 classes
    reference = REALDATA.parent / "reference" / "datasets.md"
    if reference.is_file():
        listed = re.search(r"Nucleus classes \(10\): (.*?)\.\n", reference.read_text(), flags=re.S).group(1)
        assert set(re.findall(r"`(nuclei_\w+)`", listed)) == set(PUMA.class_names[1:])
    for path, names in per_file.items():  # the parser keeps every feature and its class name, in document order
        assert [name for name, _ in parse_nuclei_geojson(path)] == names, path.name
