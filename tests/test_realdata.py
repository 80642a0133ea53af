"""Real native files from ../shared/realdata/, converted through the public API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import nucfuse_datasets as nf
from tests.conftest import link_real, real_monuseg_root, realdata

# Regions that rasterise to >= 1 px with skimage.draw.polygon (../shared/realdata/README.md, checked on real files)
MONUSEG_INSTANCES = {
    "TCGA-21-5784-01Z-00-DX1": 398,
    "TCGA-50-5931-01Z-00-DX1": 444,  # 445 Regions, one with 2 vertices
    "TCGA-A7-A13E-01Z-00-DX1": 314,
    "TCGA-AR-A1AK-01Z-00-DX1": 433,
    "TCGA-B0-5698-01Z-00-DX1": 357,
    "TCGA-CH-5767-01Z-00-DX1": 294,
    "TCGA-G9-6362-01Z-00-DX1": 472,
    "TCGA-NH-A8F7-01A-01-TS1": 363,
    "TCGA-2Z-A9J9-01A-01-TS1": 575,
    "TCGA-HT-8564-01Z-00-DX1": 249,
}
MONUSEG_REGIONS = {**MONUSEG_INSTANCES, "TCGA-50-5931-01Z-00-DX1": 445}


@pytest.fixture(scope="module")
def monuseg(tmp_path_factory):
    root = real_monuseg_root(tmp_path_factory.mktemp("real"))
    return nf.get_dataset("monuseg", root=root, progress=False)


def test_monuseg_instances_equal_nonempty_regions(monuseg):
    got = {monuseg.sample_ids[i]: monuseg.n_instances(i) for i in range(len(monuseg))}
    assert got == MONUSEG_INSTANCES
    for i in range(len(monuseg)):
        s = monuseg[i]
        assert s.image.shape == (1000, 1000, 3) and s.image.dtype == np.uint8
        ids = np.unique(s.instances)
        assert ids[0] == 0 and ids[-1] == len(ids) - 1 == MONUSEG_INSTANCES[s.meta.sample_id]  # 1..N, no gaps


def test_monuseg_region_count_and_quirks(monuseg):
    from nucfuse_datasets.datasets.monuseg import parse_aperio_xml

    src = realdata("monuseg")
    for xml in sorted(src.rglob("*.xml")):
        regions, mpp = parse_aperio_xml(xml)
        assert len(regions) == MONUSEG_REGIONS[xml.stem]
        assert (mpp is None) == xml.stem.startswith("TCGA-NH-A8F7")  # the attribute missing there
    regions, _ = parse_aperio_xml(src / "MoNuSeg 2018 Training Data" / "Annotations" / "TCGA-50-5931-01Z-00-DX1.xml")
    assert min(len(r) for r in regions) == 2  # Region Id 180
    assert min(r.min() for r in regions) < 0  # out-of-range vertices, clipped by the converter


def test_monuseg_meta_and_splits(monuseg):
    metas = {monuseg.sample_ids[i]: monuseg.meta(i) for i in range(len(monuseg))}
    assert metas["TCGA-21-5784-01Z-00-DX1"].organ == "liver"
    assert metas["TCGA-21-5784-01Z-00-DX1"].mpp == pytest.approx(0.2527)
    assert metas["TCGA-NH-A8F7-01A-01-TS1"].mpp is None
    assert metas["TCGA-2Z-A9J9-01A-01-TS1"].split == "test"
    assert metas["TCGA-A7-A13E-01Z-00-DX1"].extra["tcga_case"] == "TCGA-A7-A13E"
    assert sum(m.split == "train" for m in metas.values()) == 8


#: Real tiles -> (TCGA project, primary site, meta.organ), from the GDC "Tissue Source Site Codes" rows of their
#: barcodes' second field (2Z Moffitt, Kidney renal papillary cell carcinoma; HT Case Western - St Joes, Brain Lower
#: Grade Glioma; 21 Fox Chase, Lung squamous cell carcinoma; 50 University of Pittsburgh, Lung adenocarcinoma;
#: A7 Christiana and AR Mayo, Breast invasive carcinoma; B0 University of Pittsburgh, Kidney renal clear cell
#: carcinoma; CH Indivumed and G9 Roswell Park, Prostate adenocarcinoma; NH Candler, Colon adenocarcinoma) and the
#: organisers' organ sheet for the original training images.
MONUSEG_TCGA = {
    "TCGA-2Z-A9J9-01A-01-TS1": ("TCGA-KIRP", "kidney", "kidney"),
    "TCGA-HT-8564-01Z-00-DX1": ("TCGA-LGG", "brain", "brain"),
    "TCGA-21-5784-01Z-00-DX1": ("TCGA-LUSC", "lung", "liver"),  # the organisers' "liver": a lung slide
    "TCGA-50-5931-01Z-00-DX1": ("TCGA-LUAD", "lung", "liver"),
    "TCGA-A7-A13E-01Z-00-DX1": ("TCGA-BRCA", "breast", "breast"),
    "TCGA-AR-A1AK-01Z-00-DX1": ("TCGA-BRCA", "breast", "breast"),
    "TCGA-B0-5698-01Z-00-DX1": ("TCGA-KIRC", "kidney", "kidney"),
    "TCGA-CH-5767-01Z-00-DX1": ("TCGA-PRAD", "prostate", "prostate"),
    "TCGA-G9-6362-01Z-00-DX1": ("TCGA-PRAD", "prostate", "prostate"),
    "TCGA-NH-A8F7-01A-01-TS1": ("TCGA-COAD", "colon", "colon"),
}


def test_monuseg_tcga_project_site_and_organ(monuseg):
    """Issue 24: the test tiles had ``organ = None``; every tile now has its TSS code's project and primary site."""
    got = {}
    for i in range(len(monuseg)):
        m = monuseg.meta(i)
        got[m.sample_id] = (m.extra["tcga_project"], m.extra["primary_site"], m.organ)
    assert got == MONUSEG_TCGA


def test_monuseg_lzw_training_image_matches_pillow(monuseg):
    from PIL import Image

    src = realdata("monuseg") / "MoNuSeg 2018 Training Data" / "Tissue Images" / "TCGA-A7-A13E-01Z-00-DX1.tif"
    expected = np.asarray(Image.open(src).convert("RGB"))
    assert np.array_equal(monuseg[monuseg.index_of("TCGA-A7-A13E-01Z-00-DX1")].image, expected)


def test_dsb_selects_107_he_images(tmp_path):
    src = realdata("dsb2018") / "stage1_train"
    link_real(tmp_path, "dsb2018", [src])
    ds = nf.get_dataset("dsb2018", root=tmp_path, progress=False)
    assert len(ds) == 107
    appendix_a = Path(__file__).resolve().parents[2] / "shared" / "reference" / "datasets.md"
    if appendix_a.is_file():
        text = appendix_a.read_text().split("## Appendix A")[1]
        ids = {line.strip() for line in text.splitlines() if len(line.strip()) == 64}
        assert set(ds.sample_ids) == ids
    for i in range(len(ds)):
        sid = ds.sample_ids[i]
        n_masks = len(list((src / sid / "masks").glob("*.png")))
        assert ds.n_instances(i) == n_masks  # one instance per mask PNG
        assert ds.tile_shape(i) == (256, 320)
    assert sum(ds.n_instances(i) for i in range(len(ds))) == 4550
    import json

    manifest = json.loads((ds.store_path / "manifest.json").read_text())
    assert manifest["skipped"] == {"greyscale (fluorescence) image": 8}
    s = ds[0]
    assert s.image.shape == (256, 320, 3)


def test_dsb_mask_pixels_preserved(tmp_path):
    from PIL import Image

    src = realdata("dsb2018") / "stage1_train"
    link_real(tmp_path, "dsb2018", [src])
    ds = nf.get_dataset("dsb2018", root=tmp_path, progress=False)
    sid = "00ae65c1c6631ae6f2be1a449902976e6eb8483bf6b0740d00530220832c6d3e"
    s = ds[ds.index_of(sid)]
    masks = sorted((src / sid / "masks").glob("*.png"))
    for k, m in enumerate(masks, start=1):
        assert np.array_equal(s.instances == k, np.asarray(Image.open(m)) > 0)
