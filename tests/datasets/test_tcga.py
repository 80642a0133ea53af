"""Issue 24, item 4: TCGA project and primary site of every TCGA-derived tile, from its barcode's tissue source site.

Expected values are the GDC's "TCGA Code Tables: Tissue Source Site Codes" rows, written out here by hand (code,
source site, study), and the organisers' own organ lists of MoNuSeg and MoNuSAC (torch-em ``ORGAN_SPLITS``), which
the TSS table must agree with, bar MoNuSeg's "liver" training images, which are lung slides by their TSS codes.
"""

from __future__ import annotations

import pytest

import nucfuse_datasets as nf
from nucfuse_datasets.datasets import _tcga
from nucfuse_datasets.datasets.monusac import ORGANS as MONUSAC_ORGANS
from nucfuse_datasets.datasets.monuseg import ORGANS as MONUSEG_ORGANS
from tests.conftest import copy_native
from tests.fakedata import monuseg as fake_monuseg
from tests.fakedata import pcns as fake_pcns

#: GDC TSS rows (code: source site, study name) for the codes these tests use.
GDC_ROWS = {
    "18": ("Princess Margaret Hospital (Canada)", "Lung squamous cell carcinoma"),
    "21": ("Fox Chase Cancer Center", "Lung squamous cell carcinoma"),
    "38": ("UNC", "Lung adenocarcinoma"),
    "49": ("Johns Hopkins", "Lung adenocarcinoma"),
    "50": ("University of Pittsburgh", "Lung adenocarcinoma"),
    "2Z": ("Moffitt Cancer Center", "Kidney renal papillary cell carcinoma"),
    "HT": ("Case Western - St Joes", "Brain Lower Grade Glioma"),
    "A7": ("Christiana Healthcare", "Breast invasive carcinoma"),
    "NH": ("Candler", "Colon adenocarcinoma"),
    "G9": ("Roswell Park", "Prostate adenocarcinoma"),
    "NA": ("Duke University", "Uterine Carcinosarcoma"),  # a code that reads as "not available" to pandas
}
#: The projects of those studies (GDC "TCGA Study Abbreviations") and the organ each names.
STUDY_PROJECT = {
    "Lung squamous cell carcinoma": ("TCGA-LUSC", "lung"),
    "Lung adenocarcinoma": ("TCGA-LUAD", "lung"),
    "Kidney renal papillary cell carcinoma": ("TCGA-KIRP", "kidney"),
    "Brain Lower Grade Glioma": ("TCGA-LGG", "brain"),
    "Breast invasive carcinoma": ("TCGA-BRCA", "breast"),
    "Colon adenocarcinoma": ("TCGA-COAD", "colon"),
    "Prostate adenocarcinoma": ("TCGA-PRAD", "prostate"),
    "Uterine Carcinosarcoma": ("TCGA-UCS", "uterus"),
}


@pytest.mark.parametrize("code", sorted(GDC_ROWS))
def test_tss_rows_as_the_gdc_publishes_them(code):
    site = _tcga.tissue_source_sites()[code]
    assert (site.source_site, site.study_name) == GDC_ROWS[code]
    assert (site.project, site.primary_site) == STUDY_PROJECT[site.study_name]


def test_the_shipped_table_is_whole():
    sites = _tcga.tissue_source_sites()
    assert len(sites) == 830  # the GDC table's rows (IARCbioinfo/TCGA_platypus-nf@1e75637, data/tissueSourceSite.tsv)
    assert all(len(code) == 2 and code == code.strip() for code in sites)
    assert {s.bcr for s in sites.values()} == {"IGC", "NCH"}
    # every study of the table is a TCGA project with a site, except the BCRs' cell-line controls
    unmapped = sorted(code for code, s in sites.items() if s.project is None)
    assert unmapped == ["07", "AV"] and {sites[c].study_name for c in unmapped} == {"Cell Line Control"}
    # TCGA's 33 cancer types, plus the chronic myelogenous leukemia test study and "Miscellaneous"
    thirty_three = [
        *("ACC", "BLCA", "BRCA", "CESC", "CHOL", "COAD", "DLBC", "ESCA", "GBM", "HNSC", "KICH", "KIRC", "KIRP"),
        *("LAML", "LGG", "LIHC", "LUAD", "LUSC", "MESO", "OV", "PAAD", "PCPG", "PRAD", "READ", "SARC", "SKCM"),
        *("STAD", "TGCT", "THCA", "THYM", "UCEC", "UCS", "UVM"),
    ]
    assert len(thirty_three) == 33
    projects = {s.project for s in sites.values() if s.project}
    assert projects == {f"TCGA-{p}" for p in [*thirty_three, "LCML", "MISC"]}
    assert {s.project for s in sites.values() if s.project and not s.primary_site} == {"TCGA-MISC"}


def test_liver_training_images_of_monuseg_are_lung_slides():
    """The organisers' "liver" images TCGA-18/21/38/49/50 come from lung studies (LUSC, LUAD) by their TSS codes."""
    liver = sorted(case for case, organ in MONUSEG_ORGANS.items() if organ == "liver")
    assert [c.split("-")[1] for c in liver] == ["18", "21", "21", "38", "49", "50"]
    fields = {case: _tcga.tcga_fields(case) for case in liver}
    assert {case: f["tcga_project"] for case, f in fields.items()} == {
        "TCGA-18-5592": "TCGA-LUSC",
        "TCGA-21-5784": "TCGA-LUSC",
        "TCGA-21-5786": "TCGA-LUSC",
        "TCGA-38-6178": "TCGA-LUAD",
        "TCGA-49-4488": "TCGA-LUAD",
        "TCGA-50-5931": "TCGA-LUAD",
    }
    assert {f["primary_site"] for f in fields.values()} == {"lung"}


def test_organisers_organs_agree_with_the_tss_table():
    """Every other organ the MoNuSeg and MoNuSAC organisers give is the primary site of the case's TSS study."""
    for case, organ in [*MONUSEG_ORGANS.items(), *MONUSAC_ORGANS.items()]:
        if organ == "liver":
            continue  # MoNuSeg's lung slides, above
        assert _tcga.tcga_fields(case)["primary_site"] == organ, case


def test_fields_of_names_with_and_without_a_barcode():
    assert _tcga.tcga_fields("TCGA-G9-6342-01Z-00-DX1-1") == {
        "tcga_case": "TCGA-G9-6342",
        "tcga_project": "TCGA-PRAD",
        "primary_site": "prostate",
    }
    assert _tcga.tcga_fields("tcga-na-a4qv-01z-00-dx1")["tcga_project"] == "TCGA-UCS"  # case-insensitive, code NA
    assert _tcga.tcga_fields("TCGA-ZZ-0000") == {"tcga_case": "TCGA-ZZ-0000"}  # no such TSS code: the case only
    assert _tcga.tcga_fields("TCGA-07-0001")["tcga_case"] == "TCGA-07-0001"  # cell-line control: no project
    assert "tcga_project" not in _tcga.tcga_fields("TCGA-07-0001")
    assert _tcga.tcga_fields("Human_Skin_03") == {} and _tcga.tcga_fields("train_1") == {}


def test_fake_monuseg_tiles_carry_project_site_and_organ(tmp_path, fake_factory):
    """Before: MoNuSeg tiles outside the 30 original training images had ``organ = None`` (all 14 test tiles)."""
    copy_native(fake_factory("monuseg"), tmp_path, "monuseg")
    ds = nf.get_dataset("monuseg", root=tmp_path, progress=False)
    metas = {ds.sample_ids[i]: ds.meta(i) for i in range(len(ds))}
    assert set(metas) == {*fake_monuseg.TRAIN, *fake_monuseg.TEST}
    want = {  # (project, primary site, organ) from the GDC rows of codes 50, A7, NH, 2Z, HT
        "TCGA-50-5931-01Z-00-DX1": ("TCGA-LUAD", "lung", "liver"),  # the organisers' label stays
        "TCGA-A7-A13E-01Z-00-DX1": ("TCGA-BRCA", "breast", "breast"),
        "TCGA-NH-A8F7-01A-01-TS1": ("TCGA-COAD", "colon", "colon"),
        "TCGA-2Z-A9J9-01A-01-TS1": ("TCGA-KIRP", "kidney", "kidney"),  # test tile: organ from the TSS code
        "TCGA-HT-8564-01Z-00-DX1": ("TCGA-LGG", "brain", "brain"),
    }
    got = {sid: (m.extra["tcga_project"], m.extra["primary_site"], m.organ) for sid, m in metas.items()}
    assert got == want


def test_fake_monusac_and_pcns_tiles_carry_project_and_site(tmp_path, fake_factory):
    copy_native(fake_factory("monusac"), tmp_path, "monusac")
    ds = nf.get_dataset("monusac", root=tmp_path, progress=False)
    m = ds.meta(ds.index_of("TCGA-G9-6342-01Z-00-DX1-1"))
    assert (m.extra["tcga_project"], m.extra["primary_site"], m.organ) == ("TCGA-PRAD", "prostate", "prostate")
    for i in range(len(ds)):
        meta = ds.meta(i)
        assert meta.extra["primary_site"] == meta.organ  # MoNuSAC's organ lists agree with the TSS codes
    copy_native(fake_factory("pcns"), tmp_path, "pcns")
    pcns = nf.get_dataset("pcns", root=tmp_path, progress=False)
    by_patch = {pcns.meta(i).extra["patch_id"]: pcns.meta(i) for i in range(len(pcns))}
    rows = {pid: tcga_id for pid, tcga_id, _ in fake_pcns.CROSSWALK_ROWS}
    for pid, meta in by_patch.items():
        if pid not in rows:  # not in the crosswalk: no TCGA id, nothing derived
            assert "tcga_project" not in meta.extra
            continue
        code = rows[pid].split("-")[1]
        study = {"BT": "Bladder Urothelial Carcinoma", "A7": "Breast invasive carcinoma"}[code]  # GDC rows
        assert meta.extra["tcga_project"] == {"BT": "TCGA-BLCA", "A7": "TCGA-BRCA"}[code], study
        assert meta.extra["primary_site"] == meta.organ  # the crosswalk's cancer type names the same organ
