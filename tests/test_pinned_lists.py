"""Issue 23 item 6: the NucFuse-test lists whose candidates are public are pinned, and re-derivable by anyone.

Expected values come from outside the code under test: the candidate listings are transcribed here from the sources
cited in ``splits/nucfuse_test.json`` (file names and counts as published), the selection rule is re-implemented from
the text of ``docs/protocol.md``, the hash from the JSON's own definition (sha256 of the sorted ids joined by
newlines), and real file names from ``../shared/realdata`` where present.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
import zlib
from importlib import resources

import numpy as np
import pytest

from nucfuse_datasets import NucFuseTest
from nucfuse_datasets.benchmark.protocol import (
    PAPER_RANKING,
    pinned_candidates,
    pinned_test_ids,
    unpinned_reason,
)
from nucfuse_datasets.benchmark.selection import SmallTestSetWarning
from nucfuse_datasets.errors import TestSetMismatchError
from tests.conftest import REALDATA, copy_native
from tests.fakedata import consep, cpm17, cryonuseg, nuinsseg, puma

# ---------------------------------------------------------------- the published listings, transcribed

#: CoNSeP release: ``CoNSeP/Test/Images/test_1.png`` ... ``test_14.png`` (unpadded numbers), 14 official test tiles.
CONSEP = [f"test_{i}" for i in range(1, 15)]
#: CPM-17 Drive folder: ``test/Images/image_00.png`` ... ``image_31.png`` (hover_net issues #262, #293); the loader
#: prefixes the split because train/ and test/ reuse the names.
CPM17 = [f"test_image_{i:02d}" for i in range(32)]
#: marbybr/nuclei_cell_segmentation@ed089b1 ``01_training_dataset_geojson_nuclei/``: primary 001-103, metastatic
#: 001-102 (Zenodo v3/v4, where metastatic ROI 103 was withdrawn).
PUMA = [f"training_set_primary_roi_{i:03d}" for i in range(1, 104)] + [
    f"training_set_metastatic_roi_{i:03d}" for i in range(1, 103)
]
#: masih4/CryoNuSeg@06ac409 ``Selected_WSIs.xlsx``, column "File Name": three tiles per organ, in this organ order.
CRYO_ORGANS = (
    "AdrenalGland", "Larynx", "LymphNodes", "Mediastinum", "Pancreas",
    "Pleura", "Skin", "Testes", "Thymus", "ThyroidGland",
)  # fmt: skip
CRYONUSEG = [f"Human_{organ}_{i:02d}" for organ in CRYO_ORGANS for i in (1, 2, 3)]
#: databricks-industry-solutions/cv-playground@591d58f ``.../datasets/{train,val,test}/images/*.png`` (copies of the
#: Kaggle NuInsSeg ``tissue images``), per name prefix: (last number, digits: 2 = zero-padded, 1 = unpadded, missing).
NUINSSEG_TABLE: dict[str, tuple[int, int, tuple[int, ...]]] = {
    "human_bladder": (12, 2, ()),
    "human_brain": (12, 1, ()),
    "human_cardia": (12, 1, ()),
    "human_cerebellum": (12, 1, ()),
    "human_epiglottis": (12, 1, (9,)),
    "human_jejunum": (10, 2, ()),
    "human_kidney": (11, 2, ()),
    "human_liver": (40, 2, ()),
    "human_lung": (12, 1, (5,)),
    "human_melanoma": (12, 2, ()),
    "human_muscle": (10, 1, (4,)),
    "human_oesophagus": (48, 2, (19,)),
    "human_pancreas": (44, 2, ()),
    "human_peritoneum": (12, 1, ()),
    "human_placenta": (40, 2, ()),
    "human_pylorus": (12, 1, ()),
    "human_rectum": (12, 1, ()),
    "human_salivory": (44, 2, ()),
    "human_spleen": (34, 2, ()),
    "human_testis": (12, 1, ()),
    "human_tongue": (40, 2, ()),
    "human_tonsile": (12, 1, ()),
    "human_umbilical_cord": (12, 2, (3,)),
    "mouse_femur": (6, 2, ()),
    "mouse_heart": (28, 2, ()),
    "mouse_kidney": (40, 2, ()),
    "mouse_liver": (36, 2, ()),
    "mouse_muscle_tibia": (28, 2, ()),
    "mouse_spleen": (7, 2, ()),
    "mouse_subscapula": (42, 2, ()),
    "mouse_thymus": (6, 2, ()),
}
NUINSSEG = [
    f"{prefix}_{i:0{width}d}"
    for prefix, (last, width, missing) in NUINSSEG_TABLE.items()
    for i in range(1, last + 1)
    if i not in missing
]
PUBLISHED = {"consep": CONSEP, "cpm17": CPM17, "puma": PUMA, "cryonuseg": CRYONUSEG, "nuinsseg": NUINSSEG}
#: Candidate counts as the sources state them (CoNSeP 14 test tiles, CPM-17 32 test images; the paper's Table 1 for
#: PUMA 205, CryoNuSeg 30 and NuInsSeg 665 tiles).
COUNTS = {"consep": 14, "cpm17": 32, "puma": 205, "cryonuseg": 30, "nuinsseg": 665}
FAKES = {"consep": consep, "cpm17": cpm17, "puma": puma, "cryonuseg": cryonuseg, "nuinsseg": nuinsseg}
#: Unpinned, and why (the issue's wording: per-image facts, or no public listing).
UNPINNED = {"monusac": ("macrophage", "256"), "pcns": ("256", "1,356"), "tnbc": ("listing", "09-11")}


def documented_rule(name: str, candidates: list[str], n: int = 14) -> list[str]:
    """docs/protocol.md: sort the eligible ids, draw ``n`` positions with
    ``numpy.random.default_rng([2601, 20104, crc32(name)]).choice(len, n, replace=False)``, sort the chosen ids."""
    ordered = sorted(candidates)
    if len(ordered) <= n:
        return ordered
    rng = np.random.default_rng([2601, 20104, zlib.crc32(name.encode())])
    return sorted(ordered[int(p)] for p in rng.choice(len(ordered), n, replace=False))


def sha(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def shipped() -> dict:
    return json.loads(resources.files("nucfuse_datasets.benchmark").joinpath("splits/nucfuse_test.json").read_text())


# ---------------------------------------------------------------- the shipped file


def test_transcriptions_have_the_published_counts():
    assert {k: len(set(v)) for k, v in PUBLISHED.items()} == COUNTS
    assert len(NUINSSEG_TABLE) == 31  # "31 human and mouse organs" (NuInsSeg README; paper Table 1)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_shipped_candidates_are_the_published_listing_and_rederive_the_pin(name):
    entry = shipped()["datasets"][name]
    candidates = pinned_candidates(name)
    assert candidates == sorted(PUBLISHED[name])
    assert entry["candidates_count"] == COUNTS[name] == len(candidates)
    assert entry["candidates_sha256"] == sha(PUBLISHED[name])
    ids = pinned_test_ids(name)
    assert entry["pinned"] is True and len(ids) == 14 and set(ids) <= set(PUBLISHED[name])
    assert ids == documented_rule(name, PUBLISHED[name]) and entry["sha256"] == sha(ids)
    # the source is cited: a repository at a 40-hex commit, or a URL
    assert re.search(r"@ [0-9a-f]{40}\b|https://", entry["source"]), entry["source"]
    assert entry["eligibility"] and entry["rule"]
    if entry["candidates"] is not None:  # the file the package ships is exactly the sorted list
        text = resources.files("nucfuse_datasets.benchmark").joinpath(f"splits/{entry['candidates']}").read_text()
        assert text == "\n".join(sorted(PUBLISHED[name])) + "\n"


def test_consep_takes_its_whole_official_test_split():
    assert pinned_test_ids("consep") == sorted(CONSEP) and shipped()["datasets"]["consep"]["candidates"] is None


def test_every_ranked_dataset_is_pinned_with_candidates_or_says_why_not():
    datasets = shipped()["datasets"]
    assert set(datasets) == set(PAPER_RANKING)
    for name, entry in datasets.items():
        if entry["pinned"]:
            assert pinned_candidates(name) is not None and unpinned_reason(name) is None, name
            assert documented_rule(name, pinned_candidates(name)) == pinned_test_ids(name), name
        else:
            assert entry["ids"] is None and pinned_test_ids(name) is None and pinned_candidates(name) is None, name
            assert unpinned_reason(name) == entry["reason"], name
    assert {n for n, e in datasets.items() if not e["pinned"]} == set(UNPINNED)
    for name, words in UNPINNED.items():
        assert all(w in unpinned_reason(name) for w in words), (name, unpinned_reason(name))
    assert unpinned_reason("synthetic") is None  # not a shipped dataset: nothing to say


def test_dsb_candidates_are_the_reference_appendix():
    reference = REALDATA.parent / "reference" / "datasets.md"
    if not reference.is_file():
        pytest.skip(f"reference not found at {reference}; skipping")
    appendix = reference.read_text().split("## Appendix A", 1)[1].split("```")[1]
    assert pinned_candidates("dsb2018") == sorted(re.findall(r"^[0-9a-f]{64}$", appendix, flags=re.M))


def test_real_file_names_are_candidates():
    """The real PUMA GeoJSONs and NuInsSeg label maps in ../shared/realdata carry names of the shipped candidates."""
    checked = 0
    geojson = REALDATA / "puma" / "01_training_dataset_geojson_nuclei"
    if geojson.is_dir():
        stems = {p.name.removesuffix("_nuclei.geojson") for p in geojson.glob("*_nuclei.geojson")}
        assert len(stems) == 6 and stems <= set(pinned_candidates("puma"))
        checked += 1
    labels = REALDATA / "nuinsseg" / "human bladder" / "label masks modify"
    if labels.is_dir():
        stems = {p.stem for p in labels.glob("*.tif")}
        assert stems == {"human_bladder_01", "human_bladder_02"} and stems <= set(pinned_candidates("nuinsseg"))
        checked += 1
    if not checked:
        pytest.skip(f"real PUMA / NuInsSeg samples not found under {REALDATA}; skipping")


# ---------------------------------------------------------------- the pins through NucFuseTest, on fake copies


def _decoys(name: str, n: int = 2) -> list[str]:
    pinned = set(pinned_test_ids(name))
    return [c for c in sorted(PUBLISHED[name]) if c not in pinned][:n]


@pytest.mark.parametrize("name", sorted(FAKES))
def test_a_copy_with_the_real_names_scores_exactly_the_pinned_tiles(name, tmp_path):
    pinned = pinned_test_ids(name)
    fake = FAKES[name].make(tmp_path / "fake", ids=pinned + _decoys(name))
    copy_native(fake, tmp_path / "data", name)
    test = NucFuseTest(tmp_path / "data", datasets=[name], progress=False)
    selection = test.selections[name]
    assert selection.source == "pinned" and list(selection.ids) == pinned and len(test) == 14
    assert {test[i].meta.sample_id for i in range(len(test))} == set(pinned)
    with warnings.catch_warnings():  # the rule stays available; the fake tiles are 64 px, below the 256 px minimum
        warnings.simplefilter("error", SmallTestSetWarning)
        with pytest.raises(SmallTestSetWarning, match="only 0"):
            NucFuseTest(tmp_path / "data", datasets=[name], test_ids="rule", progress=False)


@pytest.mark.parametrize("name", ["cpm17", "nuinsseg"])
def test_a_copy_lacking_a_pinned_tile_is_refused_by_name(name, tmp_path):
    pinned = pinned_test_ids(name)
    fake = FAKES[name].make(tmp_path / "fake", ids=pinned[1:] + _decoys(name))
    copy_native(fake, tmp_path / "data", name)
    with pytest.raises(TestSetMismatchError, match="1 of the 14") as info:
        NucFuseTest(tmp_path / "data", datasets=[name], progress=False)
    assert repr(pinned[0]) in str(info.value) and "test_ids='rule'" in str(info.value)
