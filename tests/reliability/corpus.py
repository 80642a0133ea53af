"""The kit of the bad-input corpus: the case type, the world a case runs in, byte makers and mutations.

Each fake-data generator (``tests/fakedata/<name>.py``) declares its dataset's cases in ``bad_inputs()``, built from
this kit; :func:`all_cases` collects them for ``test_bad_inputs.py`` and ``test_bad_inputs_cli.py``. A registered
dataset whose generator declares no case fails ``test_corpus_ids_unique_and_every_dataset_declares_cases``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shutil
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.io
import tifffile
from PIL import Image

import nucfuse_datasets as nf
from nucfuse_datasets.errors import (
    NucFuseError,
)
from nucfuse_datasets.io.download import use_downloader
from nucfuse_datasets.io.files import sha256_file
from tests.conftest import copy_archives, copy_native
from tests.fakedata import dsb2018 as fake_dsb

#: Files the library may add to ``<root>/<name>/`` while failing: the lock and the first-use hash record.
BOOKKEEPING = {".lock", ".nucfuse-hashes.json"}
HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head>"
    "<body><p>Too many users have viewed or downloaded this file recently.</p>" + " " * 4000 + "</body></html>"
)


# --------------------------------------------------------------------------- the test context


class Ctx:
    """One case's world: ``<tmp>/root`` (the data root), ``<tmp>/outside`` (must stay empty), ``<tmp>/server``."""

    def __init__(self, name, fake, tmp_path, monkeypatch, serve_fake):
        self.name = name
        self.fake = fake
        self.tmp = tmp_path
        self.root = tmp_path / "root"
        self.outside = tmp_path / "outside"
        self.server = tmp_path / "server"
        for folder in (self.root, self.outside, self.server):
            folder.mkdir()
        self.monkeypatch = monkeypatch
        self._serve_fake = serve_fake
        self.download = False
        self.served: dict[str, Path] = {}
        self.restore: Callable[[], None] = lambda: None

    @property
    def ddir(self) -> Path:
        return self.root / self.name

    @property
    def cls(self):
        return nf.get_dataset_class(self.name)

    # ---- sources
    def native_file(self, pattern: str) -> Path:
        """Copy the native layout and return the first file matching ``pattern`` (restored on rerun)."""
        copy_native(self.fake, self.root, self.name)
        path = sorted(self.ddir.glob(pattern))[0]
        good = path.read_bytes()
        self.restore = lambda: path.write_bytes(good)
        return path

    def archive(self, key: str, *, pinned: bool = True) -> Path:
        """Copy the archives into ``<root>/<name>/``; return the one of ``key`` (restored and re-pinned on rerun).

        ``pinned``: hashes pinned to the fake archives (else the resource keeps its real hash, or none).
        """
        if pinned:
            self._serve_fake(self.name)
        copy_archives(self.fake, self.root, self.name)
        good = self.fake.archives[key]
        path = self.ddir / good.name

        def restore():
            shutil.copyfile(good, path)
            if pinned:
                self.pin(key, path)

        self.restore = restore
        return path

    def pin(self, key: str, path: Path) -> None:
        """Pin resource ``key`` to the sha256 of ``path`` (so that the extraction itself is exercised)."""
        digest = sha256_file(path)
        resources = tuple(
            dataclasses.replace(r, sha256=digest, md5=None, size=None) if r.key == key else r
            for r in self.cls.resources
        )
        self.monkeypatch.setattr(self.cls, "resources", resources)

    def serve(self) -> None:
        """Serve the fake archives for ``download=True`` (hashes pinned to them)."""
        self._serve_fake(self.name)
        self.download = True
        self.served = {a.name: a for a in self.fake.archives.values()}
        good = dict(self.served)

        def restore():
            self.served = dict(good)

        self.restore = restore

    def serve_bytes(self, filename: str, data: bytes) -> None:
        path = self.server / filename
        path.write_bytes(data)
        self.served[filename] = path

    def _transport(self, url: str, output: Path) -> None:
        shutil.copyfile(self.served[url.rsplit("/", 1)[-1]], output)

    def open(self):
        cm = use_downloader(self._transport) if self.download else contextlib.nullcontext()
        with cm:
            return nf.get_dataset(self.name, root=self.root, download=self.download, **self.fake.options)


# --------------------------------------------------------------------------- byte makers


def _hw(path: Path) -> tuple[int, int]:
    """Height and width of the image, label or array that ``path`` holds (read independently of the library)."""
    if path.suffix == ".png":
        w, h = Image.open(path).size
        return h, w
    if path.suffix in (".tif", ".tiff"):
        with tifffile.TiffFile(path) as tif:  # the header only: LZW pages need imagecodecs to decode
            return tuple(tif.pages[0].shape[:2])
    if path.suffix == ".mat":
        return tuple(scipy.io.loadmat(path)["inst_map"].shape)
    raise AssertionError(path)


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def tiff_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, array, photometric="rgb" if array.ndim == 3 else "minisblack")
    return buf.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def mat_bytes(data: dict) -> bytes:
    buf = io.BytesIO()
    scipy.io.savemat(buf, data)
    return buf.getvalue()


def truncated(frac: float) -> Callable[[Path], bytes]:
    return lambda p: p.read_bytes()[: int(p.stat().st_size * frac)]


def empty(_: Path) -> bytes:
    return b""


def garbage(_: Path) -> bytes:
    return np.random.default_rng(0).bytes(4096)


def text(content: str) -> Callable[[Path], bytes]:
    return lambda _: content.encode()


def png_of(make: Callable[[int, int], np.ndarray]) -> Callable[[Path], bytes]:
    return lambda p: png_bytes(make(*_hw(p)))


def tiff_of(make: Callable[[int, int], np.ndarray]) -> Callable[[Path], bytes]:
    return lambda p: tiff_bytes(make(*_hw(p)))


def npy_of(change: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], bytes]:
    return lambda p: npy_bytes(change(np.load(p)))


def mat_of(change: Callable[[dict], dict]) -> Callable[[Path], bytes]:
    def make(p):
        data = {k: v for k, v in scipy.io.loadmat(p).items() if not k.startswith("__")}
        return mat_bytes(change(data))

    return make


def with_inst_map(change: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict], dict]:
    def edit(data):
        data["inst_map"] = change(data["inst_map"].astype(np.float64))
        return data

    return edit


def set_pixel(value: float) -> Callable[[np.ndarray], np.ndarray]:
    def change(arr):
        arr = arr.copy()
        arr[1, 1] = value
        return arr

    return change


def as_objects(arr: np.ndarray) -> np.ndarray:
    """The same tiles as an object array (what ``np.save`` of a list of arrays gives): needs pickle to load."""
    out = np.empty(len(arr), dtype=object)
    for i, a in enumerate(arr):
        out[i] = a
    return out


def native(pattern: str, make: Callable[[Path], bytes]) -> Callable[[Ctx], str]:
    """Mutation: replace the first native file matching ``pattern`` by ``make(path)``."""

    def mutate(ctx):
        path = ctx.native_file(pattern)
        path.write_bytes(make(path))
        return path.name

    return mutate


# --------------------------------------------------------------------------- XML attacks

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE Annotations [\n  <!ENTITY lol0 "lol">\n'
    + "".join(f'  <!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">\n' for i in range(1, 10))
    + ']>\n<Annotations><Annotation Id="1"><Attributes><Attribute Name="&lol9;"/></Attributes>'
    "<Regions/></Annotation></Annotations>\n"
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?>\n<!DOCTYPE Annotations [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    '<Annotations><Annotation Id="1"><Attributes><Attribute Name="Epithelial">&xxe;</Attribute></Attributes>'
    '<Regions><Region Id="1"><Vertices><Vertex X="1" Y="1"/><Vertex X="9" Y="1"/><Vertex X="9" Y="9"/>'
    "</Vertices></Region></Regions></Annotation></Annotations>\n"
)
PARAMETER_ENTITY = (
    '<?xml version="1.0"?>\n<!DOCTYPE Annotations [<!ENTITY % ext SYSTEM "file:///etc/passwd"> %ext;]>\n'
    "<Annotations/>\n"
)
NO_REGIONS = '<?xml version="1.0"?>\n<Annotations MicronsPerPixel="0.25"><Annotation Id="1"/></Annotations>\n'


# --------------------------------------------------------------------------- archives


def _zip_with(src: Path, dest: Path, extra: list[tuple[zipfile.ZipInfo | str, bytes]]) -> None:
    """Copy every member of ``src`` into ``dest``, inserting ``extra`` in the middle."""
    with zipfile.ZipFile(src) as zin:
        infos = zin.infolist()
        blobs = [(i, zin.read(i)) for i in infos]
    half = len(blobs) // 2
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zout:
        for info, data in [*blobs[:half], *extra, *blobs[half:]]:
            zout.writestr(info, data)


def _tar_with(src: Path, dest: Path, extra: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    """Copy every member of ``src`` into ``dest`` (gzip), inserting ``extra`` in the middle (after real files)."""
    with tarfile.open(src) as tin:
        members = [(m, tin.extractfile(m).read() if m.isfile() else None) for m in tin.getmembers()]
    half = len(members) // 2
    with tarfile.open(dest, "w:gz") as tout:
        for info, data in [*members[:half], *extra, *members[half:]]:
            if data is not None:
                info.size = len(data)
            tout.addfile(info, io.BytesIO(data) if data is not None else None)


def _tar_member(name: str, *, data: bytes | None = None, link: str | None = None, kind: bytes = tarfile.REGTYPE):
    info = tarfile.TarInfo(name)
    info.type = kind
    if link is not None:
        info.linkname = link
    return info, data if kind == tarfile.REGTYPE else None


def zip_member(key: str, member: Callable[[Ctx], str], *, symlink: str | None = None) -> Callable[[Ctx], str]:
    """Mutation: the archive of ``key`` gains the member ``member(ctx)`` (a symbolic link to ``symlink``)."""

    def mutate(ctx):
        path = ctx.archive(key)
        name = member(ctx)
        if symlink is None:
            entry: zipfile.ZipInfo | str = name
            data = b"written outside the target"
        else:
            entry = zipfile.ZipInfo(name)
            entry.external_attr = 0o120777 << 16
            data = str(ctx.outside / symlink).encode()
        _zip_with(ctx.fake.archives[key], path, [(entry, data)])
        ctx.pin(key, path)
        return path.name

    return mutate


def tar_members(key: str, members: Callable[[Ctx], list]) -> Callable[[Ctx], str]:
    """Mutation: the tar archive of ``key`` gains ``members(ctx)``."""

    def mutate(ctx):
        path = ctx.archive(key)
        _tar_with(ctx.fake.archives[key], path, members(ctx))
        ctx.pin(key, path)
        return path.name

    return mutate


def escape(prefix: str, name: str = "evil.txt") -> Callable[[Ctx], str]:
    """A member name under ``prefix`` whose ``..`` chain lands in ``<tmp>/outside`` from the extraction folder.

    The extraction folder is ``<tmp>/root/<name>/.tmp-extract-*/<key>/``: four levels below ``<tmp>``.
    """
    depth = 4 + prefix.count("/") + 1
    return lambda ctx: f"{prefix}/{'../' * depth}outside/{name}"


def absolute(name: str = "evil.txt") -> Callable[[Ctx], str]:
    return lambda ctx: str(ctx.outside / name)


# --------------------------------------------------------------------------- hash, HTML, truncation, naming


def download_tampered(ctx):
    ctx.serve()
    good = ctx.fake.archives["test"]
    data = bytearray(good.read_bytes())
    data[len(data) // 3] ^= 0x55
    ctx.serve_bytes(good.name, bytes(data))
    return good.name


def download_html(ctx):
    ctx.serve()
    name = ctx.fake.archives["fold2"].name
    ctx.serve_bytes(name, HTML_PAGE.encode())
    return name


def local_appended(ctx):
    path = ctx.archive("v1.1")
    path.write_bytes(path.read_bytes() + b"\0" * 1024)
    return path.name


def local_html(pinned: bool) -> Callable[[Ctx], str]:
    def mutate(ctx):
        path = ctx.archive(next(iter(ctx.fake.archives)), pinned=pinned)
        path.write_text(HTML_PAGE)
        return path.name

    return mutate


def local_truncated(key: str, frac: float, *, pinned: bool) -> Callable[[Ctx], str]:
    def mutate(ctx):
        path = ctx.archive(key, pinned=pinned)
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * frac)])
        if pinned:
            ctx.pin(key, path)  # a hash that matches the truncated file: the extraction must notice
        return path.name

    return mutate


def empty_zip(ctx):
    path = ctx.archive("v1.1")
    with zipfile.ZipFile(path, "w"):
        pass
    ctx.pin("v1.1", path)
    return path.name


def renamed(key: str, new_name: str, *, pinned: bool, expected: str | None = None) -> Callable[[Ctx], str]:
    """Mutation: the archive is saved under another name (a browser's ``(1)`` suffix, Kaggle's archive.zip)."""

    def mutate(ctx):
        path = ctx.archive(key, pinned=pinned)
        moved = path.with_name(new_name)
        path.rename(moved)
        ctx.restore = lambda: moved.rename(path)
        return expected or path.name

    return mutate


def misnamed_folder(ctx):
    copy_native(ctx.fake, ctx.root, ctx.name)
    src = ctx.ddir / "MoNuSeg 2018 Training Data" / "Annotations"
    dst = src.with_name("annotations (xml)")
    src.rename(dst)
    ctx.restore = lambda: dst.rename(src)
    return "MoNuSeg 2018 Training Data.zip"


# --------------------------------------------------------------------------- duplicates


def _add_copy(ctx, src: Path, dst: Path) -> None:
    """Add ``dst`` (a copy of ``src``); the rerun removes it again."""
    shutil.copyfile(src, dst)
    previous = ctx.restore

    def restore():
        dst.unlink()
        previous()

    ctx.restore = restore


def dsb_ids_collapsing(ctx):
    """Two image folders whose names differ only in a character that ``safe_id`` turns into ``_``."""
    copy_native(ctx.fake, ctx.root, ctx.name)
    base = ctx.ddir / "stage1_train"
    he = fake_dsb._image_id(0, "he")  # an H&E folder (fluorescence ones are skipped before masks are read)
    made = []
    for sep in (" ", "_"):
        new = f"{he[:12]}{sep}{he[12:]}"
        shutil.copytree(base / he, base / new)
        (base / new / "images" / f"{he}.png").rename(base / new / "images" / f"{new}.png")
        made.append(base / new)
    ctx.restore = lambda: [shutil.rmtree(p) for p in made]
    return made[1].name, made[0].name  # the second one (sorted) is refused, naming the first


def pcns_patch_id_twice(ctx):
    """``007_crop.png`` in another folder is patch 7 again."""
    copy_native(ctx.fake, ctx.root, ctx.name)
    src = ctx.ddir / "manual_segmentation_data" / "brca" / "more"
    dst = ctx.ddir / "manual_segmentation_data" / "luad"
    _add_copy(ctx, src / "7_crop.png", dst / "007_crop.png")
    _add_copy(ctx, src / "7_labeled_mask_corrected.png", dst / "007_labeled_mask_corrected.png")
    return "007_crop.png", "7_crop.png"


def same_stem(pattern: str, suffix: str) -> Callable[[Ctx], str]:
    """Mutation: ``X<suffix>`` beside ``X.tif`` (``.tif``/``.tiff`` both count): two files, one sample id."""

    def mutate(ctx):
        copy_native(ctx.fake, ctx.root, ctx.name)
        src = sorted(ctx.ddir.glob(pattern))[0]
        dst = src.with_suffix(suffix)
        _add_copy(ctx, src, dst)
        return dst.name, src.name

    return mutate


def _empty_folders(ctx: Ctx, folders: list[str]) -> str:
    """The dataset's folders as extracted, but empty; the message must name ``<root>/<name>`` (searched)."""
    for rel in folders:
        (ctx.ddir / rel).mkdir(parents=True, exist_ok=True)
    return str(ctx.ddir)


# --------------------------------------------------------------------------- the corpus


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input: ``mutate(ctx)`` breaks the dataset's source and returns the offending file name(s)."""

    id: str
    dataset: str
    mutate: Callable[[Ctx], str | tuple[str, ...]]
    error: type[NucFuseError]
    fragments: tuple[str, ...] = ()  # lower-case substrings the message must contain (what was found / to do)
    rerun: bool = True  # restore the good input and check that preparing then succeeds
    max_seconds: float | None = None


MONUSEG_TRAIN = "MoNuSeg 2018 Training Data"
MONUSEG_EMPTY = [f"{MONUSEG_TRAIN}/Tissue Images", f"{MONUSEG_TRAIN}/Annotations", "MoNuSegTestData"]
MONUSEG_TRAIN_XML = "MoNuSeg 2018 Training Data/Annotations/*.xml"
MONUSEG_TRAIN_TIF = "MoNuSeg 2018 Training Data/Tissue Images/*.tif"
MONUSAC_XML = "MoNuSAC_images_and_annotations/*/*.xml"
MONUSAC_TEST = "MoNuSAC Testing Data and Annotations"
PUMA_GEOJSON = "01_training_dataset_geojson_nuclei/*.geojson"
CONSEP_MAT = "CoNSeP/Train/Labels/*.mat"
CONSEP_PNG = "CoNSeP/Train/Images/*.png"
CPM_MAT = "cpm17/train/Labels/*.mat"
DSB_HE_PNG = f"stage1_train/{fake_dsb._image_id(0, 'he')}/images/*.png"
DSB_HE_MASK = f"stage1_train/{fake_dsb._image_id(0, 'he')}/masks/*.png"
TNBC_GT = "TNBC_NucleiSegmentation/GT_01/*.png"
TNBC_IMG = "TNBC_NucleiSegmentation/Slide_01/*.png"
PCNS_LABEL = "manual_segmentation_data/blca/1_labeled_mask_corrected.png"
NUINS_IMG = "NuInsSeg/human bladder/tissue images/*.png"
NUINS_LABEL = "NuInsSeg/human bladder/label masks modify/*.tif"
NUINS_VAGUE = "NuInsSeg/human bladder/vague areas/mask binary/*.png"
CRYO_IMG = "tissue images/*.tif"
CRYO_LABEL = "Annotator 1 (biologist)/label masks modify/*.tif"
PANNUKE_IMAGES = "Fold 1/images/fold1/images.npy"
PANNUKE_TYPES = "Fold 1/images/fold1/types.npy"
PANNUKE_MASKS = "Fold 1/masks/fold1/masks.npy"


def _rgb16(h, w):
    return np.full((h, w, 3), 40000, np.uint16)


def _grey(h, w):
    return np.full((h, w), 128, np.uint8)


def _float_label(h, w):
    out = np.zeros((h, w), np.float32)
    out[4:9, 4:9] = 1.5
    return out


def _negative_label(h, w):
    out = np.zeros((h, w), np.int32)
    out[4:9, 4:9] = -5
    return out


def _colour_no_background(h, w):
    out = np.zeros((h, w, 3), np.uint8)
    out[..., 0] = 30  # every pixel a colour: a rendering, not a map
    out[: h // 2, :, 1] = 200
    return out


def _half(h, w):
    return np.zeros((h // 2, w // 2), np.uint8)


def _mask_scaled(scale):
    def change(masks):
        out = masks.astype(np.float64).copy()
        out[0, 2, 2, 0] = scale
        return out

    return change


def _snapshot(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in root.rglob("*") if p.is_file()}


def _assert_nothing_partial(ctx: Ctx, before: dict[str, str]) -> None:
    ddir = ctx.ddir
    if ddir.is_dir():
        leftovers = [p.name for p in ddir.iterdir() if p.name.startswith((".tmp-", "prepared"))]
        assert not leftovers, f"partial output left in {ddir}: {leftovers}"
    after = _snapshot(ctx.root)
    changed = sorted(rel for rel, digest in before.items() if after.get(rel) != digest)
    assert not changed, f"native files lost or altered: {changed}"
    good_archives = {sha256_file(a) for a in ctx.fake.archives.values()}
    added = sorted(
        rel
        for rel in set(after) - set(before)
        if rel.rsplit("/", 1)[-1] not in BOOKKEEPING and after[rel] not in good_archives
    )
    assert not added, f"files written although preparing failed: {added}"
    _assert_nothing_outside(ctx)


def _assert_nothing_outside(ctx: Ctx) -> None:
    assert sorted(p.name for p in ctx.tmp.iterdir()) == ["outside", "root", "server"]
    assert list(ctx.outside.rglob("*")) == [], "something was written outside the data root"
    assert not [p for p in ctx.root.rglob("*") if "evil" in p.name]
    default_root = Path(os.environ["NUCFUSE_DATA_DIR"])
    assert not default_root.exists() or list(default_root.iterdir()) == []


def all_cases() -> list[Case]:
    """Every generator's ``bad_inputs()``, in generator order (dataset name), then declaration order."""
    import importlib

    from tests.fakedata import generators

    cases: list[Case] = []
    for name in sorted(generators()):
        module = importlib.import_module(f"tests.fakedata.{name}")
        cases.extend(module.bad_inputs())
    return cases
