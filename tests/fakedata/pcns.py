"""Fake PCNS: the Box tarball (patches in nested folders, 8/16-bit label PNGs, decoys) and the TCIA crosswalk."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from tests.fakedata import FakeData
from tests.fakedata._common import rgba, tar_tree, tile, write_png

NAME = "pcns"
TOP = "manual_segmentation_data"
CROSSWALK = "Pan-Cancer-Nuclei-Seg_1365patches_to_TCGA-ID_readme.txt"

#: patch id -> (sub-folder below the top folder, tile side, label PNG kind or None = no corrected mask)
PATCHES: dict[str, tuple[str, int, str | None]] = {
    "1": ("blca", 64, "L"),
    "2": ("blca", 64, "I;16"),
    "3": ("brca", 64, None),  # no _labeled_mask_corrected.png: skipped
    "7": ("brca/more", 80, "L"),  # deeper, another tile size, RGB instead of RGBA
    "12": ("luad", 72, "I;16"),  # not in the crosswalk
}
#: crosswalk rows (patch id, TCGA id, cancer type as written, with case and space quirks); the TSS codes are real
#: ones of those studies (GDC table: BT University of Pittsburgh, bladder; A7 Christiana Healthcare, breast)
CROSSWALK_ROWS = [
    ("1", "TCGA-BT-0001", "BLCA"),
    ("2", "TCGA-BT-0002", " blca"),
    ("3", "TCGA-A7-0003", "BRCA"),
    ("7", "TCGA-A7-0007", "brca"),
]


def crosswalk_text() -> str:
    """The crosswalk as TCIA publishes it: prose, then a CSV section starting with 'Patch-ID,' (CRLF endings)."""
    lines = [
        "Pan-Cancer-Nuclei-Seg: mapping of the 1365 manually segmented patches to TCGA slides.",
        "Columns: patch id, TCGA slide id, cancer type (TCGA study), see the TCIA page.",
        "",
        "Patch-ID,TCGA-ID,CancerType",
        *(",".join(row) for row in CROSSWALK_ROWS),
        "",
    ]
    return "\r\n".join(lines)


def _write_patch(folder: Path, pid: str, side: int, kind: str | None, seed: int) -> int:
    image, inst, _ = tile(side, side, seed)
    write_png(folder / f"{pid}_crop.png", image if pid == "7" else rgba(image))
    if kind is None:
        return 0
    ids = np.unique(inst)
    ids = ids[ids > 0]
    if kind == "L":
        assert ids.max() < 256
        label = inst.astype(np.uint8)
    else:  # 16-bit ids beyond 255
        label = (inst * 1000).astype(np.uint16)
    write_png(folder / f"{pid}_labeled_mask_corrected.png", label)
    # decoys that the recursive glob must not pick up
    colours = np.zeros((side, side, 3), np.uint8)
    colours[inst > 0] = (255, 0, 0)
    write_png(folder / f"{pid}_labeled_mask_corrected_rgb.png", colours)
    if pid == "1":
        for k in range(3):
            write_png(folder / f"{pid}_labeled_mask_common{k}.png", (inst > 0).astype(np.uint8))
    return int(ids.size)


def make(workdir: Path) -> FakeData:
    native = workdir / "native"
    nuclei = 0
    for seed, (pid, (sub, side, kind)) in enumerate(PATCHES.items()):
        nuclei += _write_patch(native / TOP / sub, pid, side, kind, 500 + seed)
    (native / CROSSWALK).write_bytes(crosswalk_text().encode())
    archives = workdir / "archives"
    staging = workdir / "staging"
    shutil.copytree(native / TOP, staging / TOP)
    archives.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(native / CROSSWALK, archives / CROSSWALK)
    tiles = sum(kind is not None for _, _, kind in PATCHES.values())
    return FakeData(
        native_dir=native,
        archives={
            "main": tar_tree(staging, archives / "manual_segmentation_data.tar.gz"),
            "crosswalk": archives / CROSSWALK,
        },
        tiles={"all": tiles},
        nuclei={"all": nuclei},
    )


def bad_inputs() -> list:
    """This dataset's cases of the bad-input corpus (``tests/reliability``): each breaks the fake in one way."""
    from nucfuse_datasets.errors import InvalidSourceError, UnsafeArchiveError
    from tests.reliability.corpus import (
        PCNS_LABEL,
        Case,
        _colour_no_background,
        _tar_member,
        absolute,
        escape,
        local_truncated,
        native,
        pcns_patch_id_twice,
        png_of,
        tar_members,
        tarfile,
        truncated,
    )

    return [
        Case("truncated-targz", "pcns", local_truncated("main", 0.6, pinned=True), InvalidSourceError, ("truncated",)),
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
        Case("png-truncated-pcns", "pcns", native(PCNS_LABEL, truncated(0.5)), InvalidSourceError, ("decode",)),
        Case(
            "label-colour-without-background-pcns",
            "pcns",
            native(PCNS_LABEL, png_of(_colour_no_background)),
            InvalidSourceError,
            ("background",),
        ),
        Case("duplicate-patch-id-pcns", "pcns", pcns_patch_id_twice, InvalidSourceError, ("twice",)),
    ]
