"""Stain normalisation and augmentation (nucfuse_datasets.transforms.stain), mostly on real MoNuSeg tiles."""

from __future__ import annotations

import doctest
import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nucfuse_datasets.errors import ArgumentError, NucFuseError, NucFuseWarning
from nucfuse_datasets.schema import Sample, SampleMeta
from nucfuse_datasets.transforms.stain import (
    DegenerateStainsError,
    InsufficientTissueError,
    MacenkoNormalizer,
    NotFittedError,
    StainAugment,
    StainEstimate,
    StainEstimationError,
    StainFallbackWarning,
    cache_path,
    default_references,
    estimate_stains,
    fit_references,
)
from nucfuse_datasets.transforms.stain import _references as references_module

ROOT = Path(__file__).resolve().parents[1]
MONUSEG = ROOT.parent / "shared" / "realdata" / "monuseg"
TRAIN_DIR = MONUSEG / "MoNuSeg 2018 Training Data" / "Tissue Images"
TEST_DIR = MONUSEG / "MoNuSegTestData"

# Organs of the 8 real training stems (../shared/realdata/README.md; torch-em ORGAN_SPLITS)
ORGAN_OF = {
    "TCGA-21-5784-01Z-00-DX1": "liver",
    "TCGA-50-5931-01Z-00-DX1": "liver",
    "TCGA-A7-A13E-01Z-00-DX1": "breast",
    "TCGA-AR-A1AK-01Z-00-DX1": "breast",
    "TCGA-B0-5698-01Z-00-DX1": "kidney",
    "TCGA-CH-5767-01Z-00-DX1": "prostate",
    "TCGA-G9-6362-01Z-00-DX1": "prostate",
    "TCGA-NH-A8F7-01A-01-TS1": "colon",
}

# H&E optical-density directions typical of MoNuSeg (written by hand), used to synthesise tiles. (The
# textbook Ruifrok eosin [0.07, 0.99, 0.11] would put pure-eosin pixels under beta in red and blue.)
H_TRUE = np.array([0.60, 0.72, 0.38])
E_TRUE = np.array([0.22, 0.80, 0.55])
HE_TRUE = np.stack([H_TRUE / np.linalg.norm(H_TRUE), E_TRUE / np.linalg.norm(E_TRUE)], axis=1)


def _read(path: Path) -> np.ndarray:
    # every 2nd pixel of the 1000×1000 tile: same stains, a quarter of the work
    return np.asarray(Image.open(path).convert("RGB"))[::2, ::2].copy()


@pytest.fixture(scope="module")
def tiles() -> dict[str, np.ndarray]:
    """The 8 real MoNuSeg training tiles (500×500), keyed by stem."""
    if not TRAIN_DIR.is_dir():
        pytest.skip(f"real MoNuSeg training tiles not found at {TRAIN_DIR}; skipping")
    out = {p.stem: _read(p) for p in sorted(TRAIN_DIR.glob("*.tif"))}
    if set(out) != set(ORGAN_OF):
        pytest.skip(f"{TRAIN_DIR} does not hold the 8 expected tiles; skipping")
    return out


@pytest.fixture(scope="module")
def test_tiles() -> dict[str, np.ndarray]:
    if not TEST_DIR.is_dir():
        pytest.skip(f"real MoNuSeg test tiles not found at {TEST_DIR}; skipping")
    return {p.stem: _read(p) for p in sorted(TEST_DIR.glob("*.tif"))}


def _angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees between corresponding columns of two 3×2 stain matrices."""
    cos = (a * b).sum(axis=0) / np.linalg.norm(a, axis=0) / np.linalg.norm(b, axis=0)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _synthetic(he: np.ndarray, n: int = 96, seed: int = 0, h_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Beer–Lambert tile: 15 % pure H, 15 % pure E, 50 % mixed, 20 % empty glass; returns (image, C)."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(4, size=n * n, p=[0.15, 0.15, 0.5, 0.2])
    conc = rng.uniform(0.8, 2.0, size=(2, n * n))  # pure pixels above beta in every channel
    conc[1, kind == 0] = 0.0
    conc[0, kind == 1] = 0.0
    conc[:, kind == 3] = 0.0
    conc[0] *= h_scale
    rgb = 240.0 * np.exp(-(he @ conc))
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8).T.reshape(n, n, 3), conc


def _sample(image: np.ndarray, sid: str = "x", organ: str | None = None, split: str = "train") -> Sample:
    h, w = image.shape[:2]
    instances = np.zeros((h, w), np.int32)
    instances[h // 4 : h // 2, w // 4 : w // 2] = 1
    instances[h // 2 :, w // 2 :] = 2
    ignore = np.zeros((h, w), bool)
    ignore[:2] = True
    return Sample(
        image=image,
        instances=instances,
        classes=np.array([0, 1, 2], np.int32),
        class_names=("background", "a", "b"),
        ignore=ignore,
        meta=SampleMeta(dataset="monuseg", sample_id=sid, split=split, organ=organ),
    )


# ---------------------------------------------------------------------------------------------- estimation
def test_estimate_recovers_known_stain_vectors():
    img, conc = _synthetic(HE_TRUE)
    est = estimate_stains(img)
    assert est.stain_matrix.shape == (3, 2)
    ang = _angles(est.stain_matrix, HE_TRUE)
    assert ang[0] < 2.0 and ang[1] < 2.0, ang  # H first, E second, both within 2°
    # maximum concentrations: the 99th percentile of the true concentrations (background included)
    expected = np.percentile(conc, 99, axis=1)
    np.testing.assert_allclose(est.max_concentrations, expected, rtol=0.05)


def test_estimate_is_deterministic_and_h_first_on_real_tiles(tiles):
    for stem, img in tiles.items():
        a, b = estimate_stains(img), estimate_stains(img.copy())
        np.testing.assert_array_equal(a.stain_matrix, b.stain_matrix)
        he = a.stain_matrix
        np.testing.assert_allclose(np.linalg.norm(he, axis=0), 1.0, atol=1e-9)
        assert (he > 0).all(), stem  # optical densities are positive
        assert he[0, 0] > he[0, 1], stem  # haematoxylin absorbs more red than eosin
        assert 10.0 < _angles(he[:, :1], he[:, 1:])[0] < 40.0, stem  # two distinct stains


def test_cross_check_against_torchstain(tiles):
    torchstain = pytest.importorskip("torchstain")
    ref, src = tiles["TCGA-A7-A13E-01Z-00-DX1"], tiles["TCGA-21-5784-01Z-00-DX1"][:256, :256].copy()
    theirs = torchstain.normalizers.MacenkoNormalizer(backend="numpy")
    theirs.fit(ref)
    ours = MacenkoNormalizer().fit(ref)
    np.testing.assert_allclose(ours.stain_matrix, theirs.HERef, atol=1e-8)
    np.testing.assert_allclose(ours.max_concentrations, theirs.maxCRef, rtol=1e-8)
    expected = theirs.normalize(I=src, stains=False)[0]
    got = ours.normalize(src)
    diff = np.abs(got.astype(int) - expected.astype(int))
    assert diff.max() <= 1  # we round, torchstain truncates
    assert diff.mean() < 0.6


def test_cross_check_avg_post_against_torchstain_multitarget(tiles):
    torchstain = pytest.importorskip("torchstain")
    torch = pytest.importorskip("torch")

    refs = [tiles[s] for s in sorted(tiles)[:4]]
    theirs = torchstain.normalizers.MultiMacenkoNormalizer(norm_mode="avg-post")
    theirs.fit([torch.from_numpy(r.copy()).permute(2, 0, 1).float() for r in refs])
    ours = MacenkoNormalizer().fit(refs)
    np.testing.assert_allclose(ours.stain_matrix, theirs.HERef.numpy(), atol=1e-3)  # torch float32
    np.testing.assert_allclose(ours.max_concentrations, theirs.maxCRef.numpy(), rtol=1e-3)
    src = tiles["TCGA-NH-A8F7-01A-01-TS1"][:128, :128].copy()
    expected = theirs.normalize(I=torch.from_numpy(src).permute(2, 0, 1).float(), stains=False)[0].numpy()
    assert np.abs(ours.normalize(src).astype(int) - expected.astype(int)).max() <= 2


def test_avg_post_is_the_mean_of_the_single_estimates(tiles):
    stems = ["TCGA-A7-A13E-01Z-00-DX1", "TCGA-CH-5767-01Z-00-DX1", "TCGA-NH-A8F7-01A-01-TS1"]
    singles = [MacenkoNormalizer().fit(tiles[s]) for s in stems]
    multi = MacenkoNormalizer().fit([tiles[s] for s in stems])
    np.testing.assert_allclose(multi.stain_matrix, sum(n.stain_matrix for n in singles) / 3, atol=1e-12)
    np.testing.assert_allclose(multi.max_concentrations, sum(n.max_concentrations for n in singles) / 3, atol=1e-12)
    assert len(multi.reference_estimates) == 3
    # estimates, images and Samples can be mixed
    mixed = MacenkoNormalizer().fit([singles[0].target, tiles[stems[1]], _sample(tiles[stems[2]], "c")])
    np.testing.assert_allclose(mixed.stain_matrix, multi.stain_matrix, atol=1e-12)
    assert mixed.references[2] == "c"


# ---------------------------------------------------------------------------------------------- normalisation
@pytest.mark.parametrize(
    ("reference", "source"),
    [
        ("TCGA-CH-5767-01Z-00-DX1", "TCGA-A7-A13E-01Z-00-DX1"),  # prostate ← breast
        ("TCGA-NH-A8F7-01A-01-TS1", "TCGA-AR-A1AK-01Z-00-DX1"),  # colon ← breast
        ("TCGA-B0-5698-01Z-00-DX1", "TCGA-G9-6362-01Z-00-DX1"),  # kidney ← prostate
        ("TCGA-21-5784-01Z-00-DX1", "TCGA-CH-5767-01Z-00-DX1"),  # liver ← prostate
    ],
)
def test_normalising_moves_the_stains_to_the_reference(tiles, reference, source):
    norm = MacenkoNormalizer().fit(tiles[reference])
    src = tiles[source][:256, :256].copy()
    before = estimate_stains(src)
    out = norm.normalize(src)
    after = estimate_stains(out)
    ang_before = _angles(before.stain_matrix, norm.stain_matrix)
    ang_after = _angles(after.stain_matrix, norm.stain_matrix)
    assert ang_before.sum() > 4.0  # the pair really differs
    assert ang_after.sum() < 0.5 * ang_before.sum(), (ang_before, ang_after)
    assert ang_after[0] < 1.5  # haematoxylin lands on the reference's
    d_before = np.linalg.norm(before.max_concentrations - norm.max_concentrations)
    d_after = np.linalg.norm(after.max_concentrations - norm.max_concentrations)
    assert d_after < d_before
    np.testing.assert_allclose(after.max_concentrations, norm.max_concentrations, rtol=0.2)
    assert out.dtype == np.uint8 and out.shape == src.shape


def test_normalising_to_itself_projects_onto_the_stain_plane(tiles):
    img = tiles["TCGA-B0-5698-01Z-00-DX1"][:200, :200].copy()
    norm = MacenkoNormalizer().fit(img)
    out = norm.normalize(img)
    # same stains and maxC: I' = Io·exp(-P·OD) with P the orthogonal projection onto span(HE)
    he = norm.stain_matrix
    proj = he @ np.linalg.inv(he.T @ he) @ he.T
    od = -np.log((img.reshape(-1, 3).astype(np.float64) + 1.0) / 240.0)
    expected = np.clip(240.0 * np.exp(-(od @ proj.T)), 0, 255).reshape(img.shape)
    assert np.abs(out - expected).max() <= 0.5 + 1e-6  # rounding only
    assert not np.array_equal(out, img)  # the residual off the plane is dropped


def test_normalisation_is_deterministic(tiles):
    norm = MacenkoNormalizer().fit(tiles["TCGA-CH-5767-01Z-00-DX1"])
    src = tiles["TCGA-50-5931-01Z-00-DX1"][:128, :128].copy()
    a = norm.normalize(src)
    b = pickle.loads(pickle.dumps(norm)).normalize(src)
    c = MacenkoNormalizer.from_dict(json.loads(json.dumps(norm.to_dict()))).normalize(src)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, src)


def test_sample_transform_leaves_masks_untouched(tiles):
    norm = MacenkoNormalizer().fit(tiles["TCGA-CH-5767-01Z-00-DX1"])
    s = _sample(tiles["TCGA-A7-A13E-01Z-00-DX1"][:96, :96].copy(), "a", "breast")
    out = norm(s)
    assert out is not s
    assert out.instances is s.instances and out.ignore is s.ignore and out.classes is s.classes
    assert out.meta == s.meta and out.class_names == s.class_names
    assert not np.array_equal(out.image, s.image)
    assert s.image is not out.image  # the input sample is not modified in place


# ---------------------------------------------------------------------------------------------- robustness
def _no_haematoxylin() -> np.ndarray:
    img, _ = _synthetic(HE_TRUE, seed=3, h_scale=0.0)
    return img


ROBUSTNESS_CASES = {
    "white": (lambda: np.full((64, 64, 3), 255, np.uint8), InsufficientTissueError),
    "near-white": (
        lambda: np.clip(np.random.default_rng(1).normal(236, 6, (128, 128, 3)), 0, 255).astype(np.uint8),
        InsufficientTissueError,
    ),
    "black-dot-on-white": (
        lambda: np.pad(np.zeros((8, 8, 3), np.uint8), ((60, 60), (60, 60), (0, 0)), constant_values=250),
        InsufficientTissueError,
    ),
    "tiny-1x1": (lambda: np.full((1, 1, 3), 120, np.uint8), InsufficientTissueError),
    "tiny-6x6": (
        lambda: np.random.default_rng(2).integers(60, 180, (6, 6, 3)).astype(np.uint8),
        InsufficientTissueError,
    ),
    "empty-0x5": (lambda: np.zeros((0, 5, 3), np.uint8), InsufficientTissueError),
    "grey": (lambda: np.full((64, 64, 3), 120, np.uint8), DegenerateStainsError),
    "no-haematoxylin": (_no_haematoxylin, DegenerateStainsError),
}


@pytest.mark.parametrize("case", sorted(ROBUSTNESS_CASES))
def test_robust_tiles_fall_back_unchanged(case):
    make, error = ROBUSTNESS_CASES[case]
    img = make()
    with pytest.raises(error):
        estimate_stains(img)
    with pytest.raises(StainEstimationError):
        MacenkoNormalizer().fit(StainEstimate(HE_TRUE, np.array([1.5, 1.0]))).normalize(img, strict=True)
    norm = MacenkoNormalizer().fit(StainEstimate(HE_TRUE, np.array([1.5, 1.0])))
    aug = StainAugment([StainEstimate(HE_TRUE, np.array([1.5, 1.0]))], p=1.0, rng=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outs = [norm.normalize(img) for _ in range(3)] + [aug.augment(img) for _ in range(3)]
    assert all(o is img for o in outs)
    assert norm.n_fallbacks == 3 and aug.n_fallbacks == 3
    assert norm.fallback_reasons[error.__name__] == 3
    fallback_warnings = [w for w in caught if issubclass(w.category, StainFallbackWarning)]
    assert len(fallback_warnings) == 2  # once per transform instance, not per call
    assert issubclass(StainFallbackWarning, NucFuseWarning)


def test_fallback_sample_is_returned_as_is():
    norm = MacenkoNormalizer().fit(StainEstimate(HE_TRUE, np.array([1.5, 1.0])))
    s = _sample(np.full((32, 32, 3), 250, np.uint8))
    with pytest.warns(StainFallbackWarning):
        assert norm(s) is s


def test_synthetic_tile_with_both_stains_is_not_a_fallback():
    # the counterpart of the no-haematoxylin case: the same construction with H present works
    img, _ = _synthetic(HE_TRUE, seed=3, h_scale=1.0)
    norm = MacenkoNormalizer().fit(StainEstimate(HE_TRUE, np.array([1.5, 1.0])))
    out = norm.normalize(img)
    assert norm.n_fallbacks == 0 and out is not img


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((16, 16), np.uint8),  # greyscale
        np.zeros((16, 16, 1), np.uint8),
        np.zeros((16, 16, 4), np.uint8),  # RGBA
        np.zeros((16, 16, 3), np.float32),
        np.zeros((16, 16, 3), np.uint16),
        [[1, 2, 3]],
    ],
    ids=["grey2d", "grey1ch", "rgba", "float", "uint16", "list"],
)
def test_non_rgb_input_is_a_clear_error(bad):
    norm = MacenkoNormalizer().fit(StainEstimate(HE_TRUE, np.array([1.5, 1.0])))
    aug = StainAugment([StainEstimate(HE_TRUE, np.array([1.5, 1.0]))], p=0.0, rng=0)
    for call in (estimate_stains, norm.normalize, aug.augment, lambda x: MacenkoNormalizer().fit(x)):
        with pytest.raises(ArgumentError, match=r"RGB|uint8|greyscale|array|image|StainEstimate"):
            call(bad)
    if isinstance(bad, np.ndarray) and bad.ndim == 3 and bad.shape[2] == 4:
        with pytest.raises(ArgumentError, match=r"alpha"):
            estimate_stains(bad)


def test_argument_and_state_errors():
    with pytest.raises(NotFittedError):
        MacenkoNormalizer().normalize(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(NotFittedError):
        MacenkoNormalizer().to_dict()
    with pytest.raises(ArgumentError):
        MacenkoNormalizer().fit([])
    with pytest.raises(ArgumentError):
        MacenkoNormalizer(io=0)
    with pytest.raises(ArgumentError):
        MacenkoNormalizer(alpha=60)
    with pytest.raises(ArgumentError):
        StainAugment([StainEstimate(HE_TRUE, np.array([1.5, 1.0]))], p=1.5)
    with pytest.raises(ArgumentError):
        StainAugment(None)  # neither references nor jitter
    with pytest.raises(ArgumentError):
        StainAugment(MacenkoNormalizer())  # unfitted
    with pytest.raises(ArgumentError):
        StainAugment([StainEstimate(HE_TRUE, np.array([1.5, 1.0]))], rng="seed")
    with pytest.raises(ArgumentError):
        StainEstimate(HE_TRUE, np.array([1.5, 0.0]))
    with pytest.raises(ArgumentError):
        MacenkoNormalizer.from_dict({"format": "something else"})
    with pytest.raises(InsufficientTissueError):  # a reference must be estimable: no silent fallback
        MacenkoNormalizer().fit(np.full((32, 32, 3), 255, np.uint8))
    assert issubclass(StainEstimationError, NucFuseError) and issubclass(InsufficientTissueError, ValueError)


# ---------------------------------------------------------------------------------------------- augmentation
@pytest.fixture(scope="module")
def seven(tiles, test_tiles) -> list[StainEstimate]:
    """7 references: the 7 real training tiles other than TCGA-21-5784 (the source)."""
    return [
        StainEstimate(e.stain_matrix, e.max_concentrations, source=s)
        for s, e in ((s, estimate_stains(tiles[s])) for s in sorted(tiles) if s != "TCGA-21-5784-01Z-00-DX1")
    ]


@pytest.fixture(scope="module")
def source(tiles) -> np.ndarray:
    return tiles["TCGA-21-5784-01Z-00-DX1"][:96, :96].copy()


def test_augment_p0_is_identity_and_p1_always_changes(seven, source):
    never = StainAugment(seven, p=0.0, rng=0)
    assert all(never.augment(source) is source for _ in range(20))
    assert never.n_applied == 0 and never.last_choice is None
    always = StainAugment(seven, p=1.0, rng=0)
    for _ in range(20):
        out = always.augment(source)
        assert out is not source and not np.array_equal(out, source)
        assert always.last_choice in range(7)
    assert always.n_applied == 20 and always.choice_counts.sum() == 20


def test_augment_p_half_applies_about_half(seven):
    tiny = np.full((8, 8, 3), 128, np.uint8)  # cheap: the branch is drawn before any estimation
    aug = StainAugment(seven, p=0.5, rng=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StainFallbackWarning)
        for _ in range(400):
            aug.augment(tiny)
    assert 160 <= aug.n_applied <= 240  # Binomial(400, 0.5): ±4 sd
    assert aug.n_calls == 400


def test_augment_picks_different_references(seven, source):
    aug = StainAugment(seven, p=1.0, rng=1)
    outputs: dict[int, np.ndarray] = {}
    for _ in range(40):
        out = aug.augment(source)
        outputs.setdefault(aug.last_choice, out)
    assert len(outputs) >= 5  # 40 draws from 7 references
    assert (aug.choice_counts > 0).sum() == len(outputs)
    # each reference gives its own colours: outputs of different references differ
    means = np.array([o.reshape(-1, 3).mean(axis=0) for o in outputs.values()])
    assert np.ptp(means, axis=0).max() > 3.0
    # and an output from reference k equals plain normalisation to reference k
    k, out = next(iter(outputs.items()))
    np.testing.assert_array_equal(out, MacenkoNormalizer().fit(seven[k]).normalize(source))


def test_augment_determinism_with_seeded_generator(seven, source):
    def run(rng):
        aug = StainAugment(seven, p=0.5, rng=rng)
        outs = [aug.augment(source) for _ in range(12)]
        return [aug.last_choice] + [o.tobytes() for o in outs]

    seq = [run(np.random.default_rng(123)), run(np.random.default_rng(123)), run(123), run(123)]
    assert seq[0] == seq[1] and seq[2] == seq[3]
    assert run(np.random.default_rng(124)) != seq[0]

    def choices(seed):
        aug = StainAugment(seven, p=1.0, rng=seed)
        res = []
        for _ in range(10):
            aug.augment(source)
            res.append(aug.last_choice)
        return res

    assert choices(5) == choices(5)
    assert len({tuple(choices(s)) for s in range(5)}) > 1  # different seeds, different sequences


def test_augment_with_avg_post_normaliser_matches_normalize(tiles, source):
    norm = MacenkoNormalizer().fit([tiles[s] for s in sorted(tiles)[1:4]])
    aug = StainAugment(norm, p=1.0, rng=0)
    np.testing.assert_array_equal(aug.augment(source), norm.normalize(source))
    assert aug.last_choice == 0 and len(aug.targets) == 1
    with pytest.raises(ArgumentError):
        StainAugment(norm, beta=0.2)  # parameters must agree


def test_concentration_jitter(seven, source):
    plain = StainAugment(seven[:1], p=1.0, rng=0)
    assert np.array_equal(plain.augment(source), plain.augment(source))  # one reference, no jitter: fixed
    jit = StainAugment(seven[:1], p=1.0, rng=0, sigma1=0.2, sigma2=0.1)
    outs = [jit.augment(source) for _ in range(4)]
    assert len({o.tobytes() for o in outs}) == 4
    own = StainAugment(None, p=1.0, rng=0, sigma1=0.3)  # jitter in the tile's own stain space
    out = own.augment(source)
    assert own.last_choice == -1 and not np.array_equal(out, source)


def test_augment_sample_transform_leaves_masks(seven, source):
    s = _sample(source, "a", "liver")
    aug = StainAugment(seven, p=1.0, rng=0)
    out = aug(s)
    assert out.instances is s.instances and out.ignore is s.ignore and out.classes is s.classes
    assert out.meta == s.meta and not np.array_equal(out.image, s.image)
    assert StainAugment(seven, p=0.0, rng=0)(s) is s


def test_transforms_pickle(seven, source):
    aug = StainAugment(seven, p=0.7, rng=3, sigma1=0.1)
    clone = pickle.loads(pickle.dumps(aug))
    for _ in range(5):
        np.testing.assert_array_equal(aug.augment(source), clone.augment(source))
    norm = MacenkoNormalizer().fit(seven)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(norm)).normalize(source), norm.normalize(source))


class _Tiles:
    def __init__(self, image: np.ndarray, transform: StainAugment, n: int) -> None:
        self.image, self.transform, self.n = image, transform, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[int, int]:
        self.transform(_sample(self.image, f"t{i}"))
        return i, self.transform.last_choice


def test_dataloader_workers_draw_independently(seven, source):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    ds = _Tiles(source[:48, :48].copy(), StainAugment(seven, p=1.0, rng=11), 16)

    def run() -> dict[int, int]:
        torch.manual_seed(0)
        loader = DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="fork")
        return {int(i): int(c) for i, c in loader}

    first, second = run(), run()
    assert first == second  # reproducible with torch.manual_seed + an int rng
    even = [first[i] for i in range(0, 16, 2)]  # worker 0
    odd = [first[i] for i in range(1, 16, 2)]  # worker 1
    assert even != odd  # a copied generator would give both workers the same sequence


# ---------------------------------------------------------------------------------------------- default references
@pytest.fixture()
def stand_in(tiles, monkeypatch):
    """A list of Samples with organ metadata standing in for get_dataset("monuseg", split="train")."""
    samples = [_sample(tiles[s][:200, :200].copy(), s, ORGAN_OF[s]) for s in sorted(tiles, reverse=True)]
    # a blank tile sorting first for liver: the rule must skip it
    samples.append(_sample(np.full((64, 64, 3), 252, np.uint8), "TCGA-00-0000-blank", "liver"))
    # a test-split tile: never a reference
    samples.append(_sample(tiles["TCGA-B0-5698-01Z-00-DX1"][:64, :64].copy(), "TCGA-00-0001-test", "kidney", "test"))
    calls: list[dict] = []

    def fake_get_dataset(name, root=None, split="all", **kw):
        calls.append({"name": name, "root": root, "split": split})
        return samples

    monkeypatch.setattr(references_module, "get_dataset", fake_get_dataset)
    return calls


FIVE = ("breast", "kidney", "liver", "prostate", "colon")


def test_reference_rule_and_cache(stand_in, tiles, tmp_path):
    refs = default_references(tmp_path, organs=FIVE)
    assert [r.source for r in refs] == [
        "TCGA-A7-A13E-01Z-00-DX1",  # breast: A7 sorts before AR
        "TCGA-B0-5698-01Z-00-DX1",  # kidney: the test-split tile is not eligible
        "TCGA-21-5784-01Z-00-DX1",  # liver: the blank 00-0000 is skipped, 21 sorts before 50
        "TCGA-CH-5767-01Z-00-DX1",  # prostate: CH before G9
        "TCGA-NH-A8F7-01A-01-TS1",  # colon
    ]
    assert stand_in == [{"name": "monuseg", "root": tmp_path, "split": "train"}]
    path = cache_path(tmp_path)
    assert path == tmp_path / "stain" / "macenko-monuseg-train.json"
    data = json.loads(path.read_text())
    assert data["reference_ids"] == [r.source for r in refs]
    assert [r["organ"] for r in data["references"]] == list(FIVE)
    assert data["skipped"] == {"liver": ["TCGA-00-0000-blank"]}
    assert data["params"] == {"io": 240.0, "alpha": 1.0, "beta": 0.15}
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    # second call: served from the cache, the dataset is not opened again
    again = default_references(tmp_path, organs=FIVE)
    assert len(stand_in) == 1
    for a, b in zip(refs, again, strict=True):
        np.testing.assert_array_equal(a.stain_matrix, b.stain_matrix)
        np.testing.assert_array_equal(a.max_concentrations, b.max_concentrations)
        assert a.source == b.source
    # the cached estimates are those of the chosen images (the stand-in holds their 200×200 crops)
    direct = estimate_stains(tiles["TCGA-A7-A13E-01Z-00-DX1"][:200, :200].copy())
    np.testing.assert_allclose(direct.stain_matrix, refs[0].stain_matrix, atol=1e-12)
    np.testing.assert_allclose(direct.max_concentrations, refs[0].max_concentrations, atol=1e-12)


def test_cache_is_refitted_when_stale_or_corrupt(stand_in, tmp_path):
    default_references(tmp_path, organs=FIVE)
    default_references(tmp_path, organs=FIVE, refresh=True)
    assert len(stand_in) == 2
    default_references(tmp_path, organs=FIVE, beta=0.2)  # other parameters
    assert len(stand_in) == 3
    assert json.loads(cache_path(tmp_path).read_text())["params"]["beta"] == 0.2
    cache_path(tmp_path).write_text("{not json")
    default_references(tmp_path, organs=FIVE, beta=0.2)
    assert len(stand_in) == 4
    default_references(tmp_path, organs=("breast", "colon"))  # other organs
    assert len(stand_in) == 5


def test_unwritable_cache_warns_and_still_returns(stand_in, tmp_path, monkeypatch):
    def refuse(path, obj):
        raise PermissionError(f"read-only: {path}")

    monkeypatch.setattr(references_module, "atomic_write_json", refuse)
    with pytest.warns(NucFuseWarning, match="could not write"):
        refs = default_references(tmp_path, organs=("colon",))
    assert [r.source for r in refs] == ["TCGA-NH-A8F7-01A-01-TS1"]
    assert not cache_path(tmp_path).exists()


def test_default_seven_organs_use_the_organs_present(stand_in, tmp_path):
    """Issue 24: a MoNuSeg copy without one of the 7 training organs stopped every ``data.stain`` recipe with
    "no usable reference image for organ 'bladder'". Now the organs present give the references, with a warning
    naming the missing ones; ``missing="raise"`` keeps the strict rule."""
    # the real data here has no bladder or stomach image (../shared/realdata/README.md)
    with pytest.warns(NucFuseWarning, match=r"no MoNuSeg training image of organ\(s\) 'bladder', 'stomach'"):
        refs = default_references(tmp_path)
    assert [r.source for r in refs] == [
        "TCGA-A7-A13E-01Z-00-DX1",  # breast
        "TCGA-B0-5698-01Z-00-DX1",  # kidney
        "TCGA-21-5784-01Z-00-DX1",  # liver
        "TCGA-CH-5767-01Z-00-DX1",  # prostate
        "TCGA-NH-A8F7-01A-01-TS1",  # colon (the order of DEFAULT_ORGANS, bladder and stomach left out)
    ]
    data = json.loads(cache_path(tmp_path).read_text())
    assert data["organs"] == ["breast", "kidney", "liver", "prostate", "colon"]
    assert data["requested"] == ["breast", "kidney", "liver", "prostate", "bladder", "colon", "stomach"]
    assert data["missing"] == ["bladder", "stomach"]
    stamp = cache_path(tmp_path).stat().st_mtime_ns
    with pytest.warns(NucFuseWarning, match="'bladder', 'stomach'"):  # from the cache: still warned, not refitted
        again = default_references(tmp_path)
    assert [r.source for r in again] == [r.source for r in refs]
    assert cache_path(tmp_path).stat().st_mtime_ns == stamp
    with pytest.raises(StainEstimationError, match="bladder"):  # the strict rule, and its cache is not used
        default_references(tmp_path, missing="raise")
    with pytest.raises(ArgumentError, match="missing"):
        default_references(tmp_path, missing="ignore")


def test_partial_cache_is_refitted_once_the_missing_organ_arrives(tiles, tmp_path, monkeypatch):
    samples = [_sample(tiles["TCGA-NH-A8F7-01A-01-TS1"][:200, :200].copy(), "TCGA-NH-A8F7-01A-01-TS1", "colon")]
    monkeypatch.setattr(references_module, "get_dataset", lambda name, root=None, split="all", **kw: samples)
    with pytest.warns(NucFuseWarning, match="'breast'"):
        assert [r.source for r in default_references(tmp_path, organs=("breast", "colon"))] == [
            samples[0].meta.sample_id
        ]
    samples.append(_sample(tiles["TCGA-A7-A13E-01Z-00-DX1"][:200, :200].copy(), "TCGA-A7-A13E-01Z-00-DX1", "breast"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", NucFuseWarning)  # nothing is missing any more
        refs = default_references(tmp_path, organs=("breast", "colon"))
    assert [r.source for r in refs] == ["TCGA-A7-A13E-01Z-00-DX1", "TCGA-NH-A8F7-01A-01-TS1"]
    assert json.loads(cache_path(tmp_path).read_text())["missing"] == []
    samples.clear()
    with pytest.raises(StainEstimationError, match="none of the organs"):
        default_references(tmp_path, organs=("stomach",))


def test_from_monuseg_constructors(stand_in, tmp_path, monkeypatch, source):
    real_default = references_module.default_references

    def five(root=None, **kw):
        kw.setdefault("organs", FIVE)
        return real_default(root, **kw)

    monkeypatch.setattr(references_module, "default_references", five)
    norm = MacenkoNormalizer.from_monuseg(tmp_path)
    assert len(norm.references) == 5
    refs = default_references(tmp_path, organs=FIVE)
    np.testing.assert_allclose(norm.stain_matrix, np.mean([r.stain_matrix for r in refs], axis=0), atol=1e-12)
    aug = StainAugment.from_monuseg(tmp_path, p=1.0, rng=0)
    assert [t.source for t in aug.targets] == [r.source for r in refs]
    avg = StainAugment.from_monuseg(tmp_path, p=1.0, rng=0, mode="average")
    np.testing.assert_array_equal(avg.augment(source), norm.normalize(source))
    assert len(stand_in) == 1  # fitted once, then cached
    with pytest.raises(ArgumentError):
        StainAugment.from_monuseg(tmp_path, mode="sometimes")


def test_fit_references_on_plain_list(tiles):
    data = [_sample(tiles[s][:128, :128].copy(), s, ORGAN_OF[s].upper()) for s in ORGAN_OF]
    refs, skipped = fit_references(data, organs=("colon", "prostate"))
    assert [r.source for r in refs] == ["TCGA-NH-A8F7-01A-01-TS1", "TCGA-CH-5767-01Z-00-DX1"]
    assert skipped == {}
    with pytest.raises(ArgumentError):
        fit_references(data, organs=("colon", "Colon"))
    with pytest.raises(StainEstimationError, match="stomach"):
        fit_references(data, organs=("stomach",))


@pytest.mark.slow
def test_default_references_with_the_real_monuseg_class(tmp_path):
    """End to end through get_dataset("monuseg") on the real files (linked in place, ~12 s to prepare)."""
    if not TRAIN_DIR.is_dir() or not TEST_DIR.is_dir():
        pytest.skip(f"real MoNuSeg samples not found at {MONUSEG}; skipping")
    (tmp_path / "monuseg").mkdir()
    for folder in (TRAIN_DIR.parent, TEST_DIR):
        (tmp_path / "monuseg" / folder.name).symlink_to(folder, target_is_directory=True)
    refs = default_references(tmp_path, organs=FIVE)
    assert [r.source for r in refs] == [
        "TCGA-A7-A13E-01Z-00-DX1",
        "TCGA-B0-5698-01Z-00-DX1",
        "TCGA-21-5784-01Z-00-DX1",
        "TCGA-CH-5767-01Z-00-DX1",
        "TCGA-NH-A8F7-01A-01-TS1",
    ]
    full = estimate_stains(np.asarray(Image.open(TRAIN_DIR / "TCGA-A7-A13E-01Z-00-DX1.tif").convert("RGB")))
    np.testing.assert_allclose(refs[0].stain_matrix, full.stain_matrix, atol=1e-12)
    assert cache_path(tmp_path).is_file()


# ---------------------------------------------------------------------------------------------- docs
def test_docs_examples_run():
    doc = ROOT / "docs" / "stain.md"
    if not doc.is_file():
        pytest.skip(f"{doc} not found; skipping")
    failures, tried = doctest.testfile(str(doc), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert tried > 10 and failures == 0
