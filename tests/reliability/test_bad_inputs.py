"""A bad-input corpus, generated at test time and run through the public API.

Every case takes a dataset's fake native layout or archive (``tests/fakedata``), breaks it in one specific way,
calls ``nucfuse_datasets.get_dataset`` (or downloads through a fake server) and checks that

1. exactly the documented :class:`~nucfuse_datasets.errors.NucFuseError` subclass is raised;
2. its message names the offending file and says what was found or what to do;
3. nothing partial is left (no ``prepared*`` or ``.tmp-*`` entries, the native files unchanged, nothing
   written outside the data root), and, where the case says so, that a rerun after restoring the good input
   prepares the dataset.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shutil
import tarfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import tifffile
from PIL import Image

import nucfuse_datasets as nf
from nucfuse_datasets._download import use_downloader
from nucfuse_datasets._io import sha256_file
from nucfuse_datasets.errors import (
    ChecksumError,
    DatasetNotFoundError,
    InvalidSourceError,
    ManualDownloadRequired,
    NucFuseError,
    UnexpectedContentError,
    UnsafeArchiveError,
)
from nucfuse_datasets.store import PreparedStore
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


CASES = [
    # ---- hash / HTML / truncation / naming
    Case("hash-download-wrong", "monuseg", download_tampered, ChecksumError, ("expected", "discarded", "by hand")),
    Case("hash-local-wrong", "tnbc", local_appended, ChecksumError, ("expected", "delete the file")),
    Case("html-download", "pannuke", download_html, UnexpectedContentError, ("html page", "download it by hand")),
    Case("html-local-pinned", "dsb2018", local_html(pinned=True), ChecksumError, ("html page", "download it again")),
    Case("html-local-unpinned", "cryonuseg", local_html(pinned=False), UnexpectedContentError, ("html page",)),
    Case(
        "truncated-zip-unpinned",
        "cryonuseg",
        local_truncated("main", 0.6, pinned=False),
        InvalidSourceError,
        ("truncated",),
    ),
    Case("truncated-zip-pinned", "puma", local_truncated("rois", 0.7, pinned=True), InvalidSourceError, ("truncated",)),
    Case("truncated-targz", "pcns", local_truncated("main", 0.6, pinned=True), InvalidSourceError, ("truncated",)),
    Case("empty-zip", "tnbc", empty_zip, InvalidSourceError, ("does not contain", "tnbc_nucleisegmentation")),
    Case(
        "archive-renamed-by-browser",
        "monuseg",
        renamed("test", "MoNuSegTestData (1).zip", pinned=True),
        DatasetNotFoundError,
        ("download=true",),
    ),
    Case(
        "kaggle-archive-zip",
        "cryonuseg",
        renamed("main", "archive.zip", pinned=False),
        ManualDownloadRequired,
        ("rename it",),
    ),
    Case("folder-misnamed", "monuseg", misnamed_folder, DatasetNotFoundError, ("annotations",)),
    # ---- traversal and links (archives re-pinned, so that extraction is reached)
    Case("zip-dotdot", "tnbc", zip_member("v1.1", escape("TNBC_NucleiSegmentation")), UnsafeArchiveError, ("'..'",)),
    Case("zip-absolute", "puma", zip_member("nuclei", absolute()), UnsafeArchiveError, ("absolute path",)),
    Case(
        "zip-backslash-dotdot",
        "monusac",
        zip_member("train", lambda ctx: escape("MoNuSAC_images_and_annotations")(ctx).replace("/", "\\")),
        UnsafeArchiveError,
        ("'..'",),
    ),
    Case(
        "zip-symlink",
        "consep",
        zip_member("consep", lambda ctx: "CoNSeP/Train/Images/link.png", symlink="target.png"),
        UnsafeArchiveError,
        ("symbolic link",),
    ),
    Case(
        "tar-dotdot",
        "pcns",
        tar_members("main", lambda ctx: [_tar_member(escape("manual_segmentation_data/blca")(ctx), data=b"x")]),
        UnsafeArchiveError,
        ("'..'",),
    ),
    Case(
        "tar-absolute",
        "pcns",
        tar_members("main", lambda ctx: [_tar_member(absolute()(ctx), data=b"x")]),
        UnsafeArchiveError,
        ("absolute path",),
    ),
    Case(
        "tar-symlink-outside-then-write-through",
        "pcns",
        tar_members(
            "main",
            lambda ctx: [
                _tar_member("manual_segmentation_data/blca/esc", link=str(ctx.outside), kind=tarfile.SYMTYPE),
                _tar_member("manual_segmentation_data/blca/esc/evil.txt", data=b"x"),
            ],
        ),
        UnsafeArchiveError,
        ("outside the target",),
    ),
    Case(
        "tar-symlink-relative-outside",
        "pcns",
        tar_members(
            "main",
            lambda ctx: [
                _tar_member(
                    "manual_segmentation_data/blca/99_labeled_mask_corrected.png",
                    link="../" * 6 + "outside/target.png",
                    kind=tarfile.SYMTYPE,
                )
            ],
        ),
        UnsafeArchiveError,
        ("outside the target",),
    ),
    Case(
        "tar-hardlink-outside",
        "pcns",
        tar_members(
            "main",
            lambda ctx: [
                _tar_member("manual_segmentation_data/blca/98_crop.png", link="/etc/passwd", kind=tarfile.LNKTYPE)
            ],
        ),
        UnsafeArchiveError,
        ("outside the target",),
    ),
    Case(
        "tar-fifo",
        "pcns",
        tar_members("main", lambda ctx: [_tar_member("manual_segmentation_data/blca/pipe", kind=tarfile.FIFOTYPE)]),
        UnsafeArchiveError,
        ("special file",),
    ),
    # ---- XML attacks: refused before any expansion or external read
    Case(
        "xml-billion-laughs-monuseg",
        "monuseg",
        native(MONUSEG_TRAIN_XML, text(BILLION_LAUGHS)),
        InvalidSourceError,
        ("refused",),
        max_seconds=2.0,
    ),
    Case(
        "xml-external-entity-monuseg",
        "monuseg",
        native(MONUSEG_TRAIN_XML, text(EXTERNAL_ENTITY)),
        InvalidSourceError,
        ("refused",),
        max_seconds=2.0,
    ),
    Case(
        "xml-billion-laughs-monusac",
        "monusac",
        native(MONUSAC_XML, text(BILLION_LAUGHS)),
        InvalidSourceError,
        ("refused",),
        max_seconds=2.0,
    ),
    Case(
        "xml-external-entity-monusac",
        "monusac",
        native(MONUSAC_XML, text(EXTERNAL_ENTITY)),
        InvalidSourceError,
        ("refused",),
        max_seconds=2.0,
    ),
    Case(
        "xml-parameter-entity-monusac",
        "monusac",
        native(MONUSAC_XML, text(PARAMETER_ENTITY)),
        InvalidSourceError,
        ("refused",),
        max_seconds=2.0,
    ),
    # ---- malformed formats
    Case("xml-truncated-monuseg", "monuseg", native(MONUSEG_TRAIN_XML, truncated(0.5)), InvalidSourceError, ("xml",)),
    Case("xml-truncated-monusac", "monusac", native(MONUSAC_XML, truncated(0.5)), InvalidSourceError, ("xml",)),
    Case(
        "xml-vertex-not-a-number-monusac",
        "monusac",
        native(MONUSAC_XML, lambda p: p.read_bytes().replace(b'X="', b'X="x', 1)),
        InvalidSourceError,
        ("non-numeric",),
    ),
    Case(
        "svs-only-and-corrupt-monusac",
        "monusac",
        native(f"{MONUSAC_TEST}/TCGA-2Z-A9JG-01Z-00-DX1/TCGA-2Z-A9JG-01Z-00-DX1_2.svs", garbage),
        InvalidSourceError,
        ("missing", "cannot be read"),
    ),
    Case("geojson-truncated", "puma", native(PUMA_GEOJSON, truncated(0.5)), InvalidSourceError, ("geojson",)),
    Case("geojson-not-a-collection", "puma", native(PUMA_GEOJSON, text("42")), InvalidSourceError, ("geojson",)),
    Case(
        "geojson-ragged-coordinates",
        "puma",
        native(
            PUMA_GEOJSON,
            text(
                '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, '
                '"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [4, 0, 1], [4]]]}}]}'
            ),
        ),
        InvalidSourceError,
        ("coordinates",),
    ),
    Case("mat-garbage-consep", "consep", native(CONSEP_MAT, garbage), InvalidSourceError, (".mat",)),
    Case("mat-truncated-cpm17", "cpm17", native(CPM_MAT, truncated(0.5)), InvalidSourceError, (".mat",)),
    Case(
        "mat-missing-variable-cpm17",
        "cpm17",
        native(CPM_MAT, lambda p: mat_bytes({"labels": np.zeros(_hw(p))})),
        InvalidSourceError,
        ("inst_map", "missing"),
    ),
    Case(
        "mat-v73-consep",
        "consep",
        native(
            CONSEP_MAT,
            text(f"{'MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .':<116}        \x00\x02IM" + "\0" * 512),
        ),
        InvalidSourceError,
        ("v7.3",),
    ),
    Case("png-truncated-dsb2018", "dsb2018", native(DSB_HE_PNG, truncated(0.6)), InvalidSourceError, ("decode",)),
    Case("png-garbage-dsb2018-mask", "dsb2018", native(DSB_HE_MASK, garbage), InvalidSourceError, ("decode",)),
    Case("png-garbage-tnbc", "tnbc", native(TNBC_GT, garbage), InvalidSourceError, ("decode",)),
    Case(
        "colour-ground-truth-tnbc",
        "tnbc",
        native(TNBC_GT, png_of(_colour_no_background)),
        InvalidSourceError,
        ("colour channels differ",),
    ),
    Case("png-truncated-pcns", "pcns", native(PCNS_LABEL, truncated(0.5)), InvalidSourceError, ("decode",)),
    Case("tiff-truncated-monuseg", "monuseg", native(MONUSEG_TRAIN_TIF, truncated(0.3)), InvalidSourceError, ("tiff",)),
    Case(
        "tiff-garbage-monuseg",
        "monuseg",
        native(MONUSEG_TRAIN_TIF, lambda p: b"II*\x00" + garbage(p)),
        InvalidSourceError,
        ("tiff",),
    ),
    Case("tiff-garbage-nuinsseg-label", "nuinsseg", native(NUINS_LABEL, garbage), InvalidSourceError, ("decode",)),
    # ---- .npy that needs pickle
    Case(
        "npy-pickle-images",
        "pannuke",
        native(PANNUKE_IMAGES, npy_of(as_objects)),
        InvalidSourceError,
        ("pickle",),
    ),
    Case("npy-pickle-masks", "pannuke", native(PANNUKE_MASKS, npy_of(as_objects)), InvalidSourceError, ("pickle",)),
    Case(
        "npy-pickle-types",
        "pannuke",
        native(PANNUKE_TYPES, npy_of(lambda a: a.astype(object))),
        InvalidSourceError,
        ("pickle",),
    ),
    Case("npy-truncated-masks", "pannuke", native(PANNUKE_MASKS, truncated(0.5)), InvalidSourceError, (".npy",)),
    # ---- shape and dtype
    Case(
        "size-mismatch-cpm17",
        "cpm17",
        native(CPM_MAT, lambda p: mat_bytes({"inst_map": np.zeros((10, 12), np.int32)})),
        InvalidSourceError,
        ("differs",),
    ),
    Case("size-mismatch-tnbc", "tnbc", native(TNBC_GT, png_of(_half)), InvalidSourceError, ("differs",)),
    Case("size-mismatch-dsb2018", "dsb2018", native(DSB_HE_MASK, png_of(_half)), InvalidSourceError, ("differs",)),
    Case(
        "size-mismatch-nuinsseg-vague", "nuinsseg", native(NUINS_VAGUE, png_of(_half)), InvalidSourceError, ("differs",)
    ),
    Case(
        "size-mismatch-pannuke",
        "pannuke",
        native(PANNUKE_MASKS, npy_of(lambda a: a[:, :32, :32])),
        InvalidSourceError,
        ("expected shape",),
    ),
    Case("greyscale-png-consep", "consep", native(CONSEP_PNG, png_of(_grey)), InvalidSourceError, ("greyscale",)),
    Case(
        "greyscale-tiff-monuseg",
        "monuseg",
        native(MONUSEG_TRAIN_TIF, tiff_of(_grey)),
        InvalidSourceError,
        ("greyscale",),
    ),
    Case(
        "16bit-png-nuinsseg",
        "nuinsseg",
        native(NUINS_IMG, png_of(lambda h, w: np.full((h, w), 1000, np.uint16))),
        InvalidSourceError,
        ("8-bit",),
    ),
    Case("16bit-rgb-tiff-cryonuseg", "cryonuseg", native(CRYO_IMG, tiff_of(_rgb16)), InvalidSourceError, ("8-bit",)),
    Case(
        "4-channel-npy-pannuke",
        "pannuke",
        native(PANNUKE_IMAGES, npy_of(lambda a: np.concatenate([a, a[..., :1]], axis=3))),
        InvalidSourceError,
        ("expected shape",),
    ),
    Case(
        "tile-count-mismatch-pannuke",
        "pannuke",
        native(PANNUKE_IMAGES, npy_of(lambda a: a[:-1])),
        InvalidSourceError,
        ("images.npy has 2 tiles",),
    ),
    # ---- labels: float, negative, NaN, out of range
    Case(
        "label-float-tiff-nuinsseg",
        "nuinsseg",
        native(NUINS_LABEL, tiff_of(_float_label)),
        InvalidSourceError,
        ("non-integer",),
    ),
    Case(
        "label-negative-tiff-cryonuseg",
        "cryonuseg",
        native(CRYO_LABEL, tiff_of(_negative_label)),
        InvalidSourceError,
        ("negative",),
    ),
    Case(
        "label-colour-without-background-pcns",
        "pcns",
        native(PCNS_LABEL, png_of(_colour_no_background)),
        InvalidSourceError,
        ("background",),
    ),
    Case(
        "label-negative-mat-consep",
        "consep",
        native(CONSEP_MAT, mat_of(with_inst_map(set_pixel(-1)))),
        InvalidSourceError,
        ("negative",),
    ),
    Case(
        "label-fraction-mat-consep",
        "consep",
        native(CONSEP_MAT, mat_of(with_inst_map(set_pixel(2.5)))),
        InvalidSourceError,
        ("non-integer",),
    ),
    Case(
        "label-nan-mat-cpm17",
        "cpm17",
        native(CPM_MAT, mat_of(with_inst_map(set_pixel(np.nan)))),
        InvalidSourceError,
        ("non-finite",),
    ),
    Case(
        "class-out-of-range-consep",
        "consep",
        native(CONSEP_MAT, mat_of(lambda d: {**d, "inst_type": np.full_like(d["inst_type"], 9.0)})),
        InvalidSourceError,
        ("outside",),
    ),
    Case(
        "mask-fraction-pannuke",
        "pannuke",
        native(PANNUKE_MASKS, npy_of(_mask_scaled(0.5))),
        InvalidSourceError,
        ("non-integer",),
    ),
    Case(
        "mask-negative-pannuke",
        "pannuke",
        native(PANNUKE_MASKS, npy_of(_mask_scaled(-3.0))),
        InvalidSourceError,
        ("negative",),
    ),
    Case(
        "image-out-of-range-pannuke",
        "pannuke",
        native(PANNUKE_IMAGES, npy_of(lambda a: a.astype(np.float64) * 2.0 + 1.0)),
        InvalidSourceError,
        ("outside 0..255",),
    ),
    # ---- empty files
    Case("empty-xml-monuseg", "monuseg", native(MONUSEG_TRAIN_XML, empty), InvalidSourceError, ("xml",)),
    Case("empty-xml-monusac", "monusac", native(MONUSAC_XML, empty), InvalidSourceError, ("xml",)),
    Case("empty-geojson-puma", "puma", native(PUMA_GEOJSON, empty), InvalidSourceError, ("geojson",)),
    Case("empty-mat-cpm17", "cpm17", native(CPM_MAT, empty), InvalidSourceError, (".mat",)),
    Case("empty-png-tnbc", "tnbc", native(TNBC_IMG, empty), InvalidSourceError, ("decode",)),
    Case("empty-npy-pannuke", "pannuke", native(PANNUKE_TYPES, empty), InvalidSourceError, (".npy",)),
    Case(
        "xml-without-regions-monuseg",
        "monuseg",
        native(MONUSEG_TRAIN_XML, text(NO_REGIONS)),
        InvalidSourceError,
        ("region",),
    ),
    # ---- two native files, one sample id
    Case("duplicate-safe-id-dsb2018", "dsb2018", dsb_ids_collapsing, InvalidSourceError, ("duplicate",)),
    Case("duplicate-patch-id-pcns", "pcns", pcns_patch_id_twice, InvalidSourceError, ("twice",)),
    Case(
        "duplicate-tif-tiff-monuseg",
        "monuseg",
        same_stem("MoNuSegTestData/*.tif", ".tiff"),
        InvalidSourceError,
        ("both",),
    ),
    Case(
        "duplicate-tif-tiff-monusac",
        "monusac",
        same_stem("MoNuSAC_images_and_annotations/*/*.tif", ".TIF"),
        InvalidSourceError,
        ("both",),
    ),
    Case("duplicate-tif-tiff-cryonuseg", "cryonuseg", same_stem(CRYO_LABEL, ".tiff"), InvalidSourceError, ("both",)),
    Case("duplicate-tif-tiff-nuinsseg", "nuinsseg", same_stem(NUINS_LABEL, ".tiff"), InvalidSourceError, ("both",)),
]


# --------------------------------------------------------------------------- checks


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


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")  # Pillow, on the corrupt TIFFs
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, tmp_path, fake_factory, serve_fake, monkeypatch):
    ctx = Ctx(case.dataset, fake_factory(case.dataset), tmp_path, monkeypatch, serve_fake)
    offenders = case.mutate(ctx)
    offenders = (offenders,) if isinstance(offenders, str) else offenders
    before = _snapshot(ctx.root)

    start = time.perf_counter()
    with pytest.raises(NucFuseError) as info:
        ctx.open()
    elapsed = time.perf_counter() - start

    exc = info.value
    assert type(exc) is case.error, f"expected {case.error.__name__}, got {type(exc).__name__}: {exc}"
    message = str(exc)
    for offender in offenders:
        assert offender in message, f"the message does not name {offender!r}: {message}"
    for fragment in case.fragments:
        assert fragment in message.lower(), f"{fragment!r} missing from: {message}"
    assert "root:x:0:0" not in message  # nothing of /etc/passwd was read into the error
    if case.max_seconds is not None:
        assert elapsed < case.max_seconds, f"took {elapsed:.2f} s"
    _assert_nothing_partial(ctx, before)

    if case.rerun:
        ctx.restore()
        ds = ctx.open()
        assert len(ds) == ctx.fake.tiles[ds.split]
        assert PreparedStore(ds.store_path).verify(full=True) == []
        assert not [p.name for p in ctx.ddir.iterdir() if p.name.startswith(".tmp-")]
        _assert_nothing_outside(ctx)


def test_failed_rebuild_keeps_the_old_store(tmp_path, fake_factory, monkeypatch):
    """A stale store whose rebuild fails on a bad file stays in place, complete and loadable."""
    fake = fake_factory("tnbc")
    copy_native(fake, tmp_path, "tnbc")
    old = nf.get_dataset("tnbc", root=tmp_path)
    old_files = _snapshot(old.store_path)
    cls = nf.get_dataset_class("tnbc")
    monkeypatch.setattr(cls, "converter_version", cls.converter_version + 1)
    bad = sorted((tmp_path / "tnbc").glob(TNBC_GT))[-1]
    bad.write_bytes(garbage(bad))
    with pytest.raises(InvalidSourceError, match=bad.name):
        nf.get_dataset("tnbc", root=tmp_path)
    assert _snapshot(old.store_path) == old_files
    assert PreparedStore(old.store_path).converter_version == cls.converter_version - 1
    assert not [p.name for p in (tmp_path / "tnbc").iterdir() if p.name.startswith(".tmp-")]
    monkeypatch.undo()
    again = nf.get_dataset("tnbc", root=tmp_path)  # the old store is still a valid current store
    assert len(again) == fake.tiles["all"]
    again[0].validate_values()


def test_corpus_ids_unique_and_datasets_covered():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert {c.dataset for c in CASES} == {
        "consep",
        "cpm17",
        "cryonuseg",
        "dsb2018",
        "monusac",
        "monuseg",
        "nuinsseg",
        "pannuke",
        "pcns",
        "puma",
        "tnbc",
    }


# --------------------------------------------------------------------------- the positive case: RGBA sources


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("tnbc", "TNBC_NucleiSegmentation/Slide_*/*.png"),
        ("dsb2018", "stage1_train/*/images/*.png"),
        ("consep", "CoNSeP/*/Images/*.png"),
        ("cpm17", "cpm17/test/Images/*.png"),
    ],
)
def test_rgba_source_is_accepted(name, pattern, tmp_path, fake_factory):
    """Where the source's images are RGBA, they convert, and the stored image is their RGB channels."""
    fake = fake_factory(name)
    copy_native(fake, tmp_path, name)
    rgba = {}
    for path in sorted((tmp_path / name).glob(pattern)):
        with Image.open(path) as im:
            if im.mode == "RGBA":
                rgba[path.relative_to(tmp_path / name).as_posix()] = np.asarray(im)
    assert rgba, f"the {name} fake has no RGBA image"
    ds = nf.get_dataset(name, root=tmp_path, **fake.options)
    seen = 0
    for i in range(len(ds)):
        sample = ds[i]
        source = rgba.get(sample.meta.original_file)
        if source is None:
            continue
        seen += 1
        assert sample.image.shape == (*source.shape[:2], 3)
        np.testing.assert_array_equal(sample.image, source[..., :3])
    assert seen, "no RGBA tile was found in the prepared store"


def test_zip_bomb_is_bounded_through_the_public_api(tmp_path, serve_fake, monkeypatch):
    """Preparation extracts with a size bound (ratio to the archive's size, with a floor): a bomb stops early."""
    from nucfuse_datasets.datasets import _base

    fake = serve_fake("monuseg").fake
    copy_archives(fake, tmp_path, "monuseg")
    archive = tmp_path / "monuseg" / fake.archives["train"].name
    with zipfile.ZipFile(archive) as zf:
        expanded = sum(i.file_size for i in zf.infolist())
    monkeypatch.setattr(_base, "EXTRACT_MIN_BYTES", 0)
    monkeypatch.setattr(_base, "EXTRACT_MAX_RATIO", expanded / archive.stat().st_size / 2)  # half of what it needs
    with pytest.raises(InvalidSourceError, match="over the limit") as info:
        nf.get_dataset("monuseg", root=tmp_path)
    assert archive.name in str(info.value)
    assert not [p.name for p in (tmp_path / "monuseg").iterdir() if p.name.startswith((".tmp-", "prepared"))]
    monkeypatch.undo()
    serve_fake("monuseg")
    assert len(nf.get_dataset("monuseg", root=tmp_path)) == fake.tiles["all"]


def _bad_npy_object(path: Path) -> None:
    np.save(path, np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)


def _bad_png_garbage(path: Path) -> None:
    path.with_suffix(".png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    path.unlink()


def _bad_npy_truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def _bad_float_png(path: Path) -> None:
    tifffile.imwrite(path.with_suffix(".tif"), np.full((8, 8), 0.5, np.float32))
    path.unlink()


@pytest.mark.parametrize(
    ("break_it", "text"),
    [
        (_bad_npy_object, "pickle"),
        (_bad_png_garbage, "cannot decode"),
        (_bad_npy_truncated, "npy"),
        (_bad_float_png, "non-integer"),
    ],
    ids=["npy-pickle", "png-garbage", "npy-truncated", "tif-float-labels"],
)
def test_bad_prediction_files_name_the_tile(tmp_path, break_it, text):
    """A folder of saved predictions (``nucfuse evaluate --predictions``) with one broken file."""
    from nucfuse_datasets import NucFuseTest
    from nucfuse_datasets.errors import InvalidPredictionError

    opts = {"synthetic": {"n_tiles": 14, "tile_size": 256}}
    test = NucFuseTest(tmp_path / "data", datasets=["synthetic"], dataset_options=opts, test_ids="rule")
    stems = test.export(tmp_path / "preds")
    for stem in stems:  # keep only the ground-truth maps: a perfect set of predictions
        (tmp_path / "preds" / f"{stem}.tif").unlink()
    victim = tmp_path / "preds" / f"{stems[5]}.npy"
    break_it(victim)
    with pytest.raises(InvalidPredictionError, match=text) as info:
        test.evaluate_predictions(tmp_path / "preds", progress=False)
    assert stems[5] in str(info.value)
