"""Writers shared by the fake-data generators: images in native formats, XML, archives."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from nucfuse_datasets.datasets.synthetic import generate_tile


def tile(h: int, w: int, seed: int, density: float = 1.5) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """A synthetic H&E tile, its instance map and classes (ids 1..N possibly with gaps)."""
    return generate_tile(h, w, np.random.default_rng(seed), density=density)


def dense_ids(instances: np.ndarray) -> np.ndarray:
    """The expected converted map, written independently of the library: ids renumbered 1..N by ascending old id.

    A plain lookup over the sorted distinct non-zero ids (0 stays background), so tests that compare a converted
    map with it do not take their expectation from ``nucfuse_datasets.io.store.relabel_sequential``.
    """
    out = np.zeros(instances.shape, np.int32)
    for new, old in enumerate(sorted(set(instances.ravel().tolist()) - {0}), start=1):
        out[instances == old] = new
    return out


def rgba(image: np.ndarray) -> np.ndarray:
    """Append an opaque alpha channel."""
    return np.concatenate([image, np.full((*image.shape[:2], 1), 255, np.uint8)], axis=2)


def write_png(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path, format="PNG")


def write_tiff_pil(path: Path, array: np.ndarray, compression: str | None = None) -> None:
    """TIFF written by Pillow: ``compression="tiff_lzw"`` or ``"packbits"`` reproduce MoNuSeg's files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="TIFF", compression=compression)


def write_tiff(path: Path, array: np.ndarray) -> None:
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array)


def instance_polygons(
    instances: np.ndarray, jitter: float = 0.3, rng: np.random.Generator | None = None
) -> list[np.ndarray]:
    """One outline polygon (x, y floats) per instance, tracing its pixel boundary with fractional jitter."""
    from skimage.measure import find_contours

    rng = rng or np.random.default_rng(0)
    polys = []
    for k in np.unique(instances):
        if k == 0:
            continue
        mask = np.pad(instances == k, 1)
        contours = find_contours(mask.astype(float), 0.5)
        if not contours:
            continue
        c = max(contours, key=len) - 1.0  # undo the padding; (row, col)
        xy = np.column_stack([c[:, 1], c[:, 0]]) + rng.uniform(-jitter, jitter, (len(c), 2))
        polys.append(xy)
    return polys


def aperio_xml(
    regions: list[np.ndarray], mpp: float | None = 0.2527, classes: dict[str, list[np.ndarray]] | None = None
) -> str:
    """Aperio ImageScope XML as MoNuSeg (one Annotation) or MoNuSAC (one Annotation per class) write it."""
    head = f'<Annotations MicronsPerPixel="{mpp}">' if mpp is not None else "<Annotations>"
    groups = classes if classes is not None else {"": regions}
    parts = ['<?xml version="1.0"?>', head]
    rid = 0
    for aid, (name, polys) in enumerate(groups.items(), start=1):
        parts.append(f'<Annotation Id="{aid}" Name="" ReadOnly="0" NameReadOnly="0" LineColor="65280">')
        parts.append(
            "<Attributes>"
            + (
                f'<Attribute Name="{name}" Id="0" Value=""/>'
                if name
                else '<Attribute Name="Description" Id="0" Value=""/>'
            )
            + "</Attributes>"
        )
        parts.append(
            "<Regions><RegionAttributeHeaders>"
            '<AttributeHeader Id="9999" Name="Region" ColumnWidth="-1"/></RegionAttributeHeaders>'
        )
        for xy in polys:
            rid += 1
            parts.append(
                f'<Region Id="{rid}" Type="0" Zoom="1" Selected="0" ImageLocation="" Area="0" Length="0">'
                "<Attributes/><Vertices>"
            )
            parts.extend(f'<Vertex X="{x:.6f}" Y="{y:.6f}" Z="0"/>' for x, y in xy)
            parts.append("</Vertices></Region>")
        parts.append("</Regions><Plots/></Annotation>")
    parts.append("</Annotations>")
    return "\n".join(parts)


def zip_tree(src: Path, archive: Path, *, macosx_junk: bool = False) -> Path:
    """Zip every file under ``src`` with paths relative to ``src`` (like the upstream zips)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src).as_posix()
            if path.is_dir():
                zf.writestr(rel + "/", b"")
            else:
                zf.write(path, rel)
        if macosx_junk:
            zf.writestr("__MACOSX/._junk", b"\x00\x05\x16\x07 mac resource fork")
    return archive


def tar_tree(src: Path, archive: Path) -> Path:
    """``tar.gz`` every file under ``src`` with paths relative to ``src``."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tf:
        for path in sorted(src.rglob("*")):
            tf.add(path, arcname=path.relative_to(src).as_posix(), recursive=False)
    return archive


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def fake_polygons(h: int, w: int, rng: np.random.Generator, n: int = 8) -> list[np.ndarray]:
    """``n`` nucleus outlines (x, y, fractional) that each cover a sizeable, never fully hidden area.

    Outlines sit on a jittered grid (radius 3.5–6 px, 20 vertices each); the first crosses the
    left/top border (vertices below 0, clipped by the converter) and the last overlaps the
    second-to-last by about a third, so overlap handling is exercised without hiding anything.
    """
    cols = max(1, int(np.ceil(np.sqrt(n * w / h))))
    rows = int(np.ceil(n / cols))
    polys = []
    t = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    for k in range(n):
        r, c = divmod(k, cols)
        cy = (r + 0.5) * h / rows + rng.uniform(-2, 2)
        cx = (c + 0.5) * w / cols + rng.uniform(-2, 2)
        a, b = rng.uniform(4.5, 6.0), rng.uniform(3.5, 4.5)
        if k == 0:
            cy, cx = 2.0, 2.0  # crosses the top-left corner
        if k == n - 1 and n > 2:
            py, px = polys[-1][:, 1].mean(), polys[-1][:, 0].mean()
            cy, cx = py + 1.5, px + 5.0  # overlaps the previous outline
        xy = np.column_stack([cx + a * np.cos(t), cy + b * np.sin(t)]) + rng.uniform(-0.3, 0.3, (20, 2))
        polys.append(xy)
    return polys


def paint_nuclei(image: np.ndarray, polys: list[np.ndarray]) -> np.ndarray:
    """Darken the image inside each outline (purple nuclei on the synthetic stroma)."""
    from skimage.draw import polygon

    out = image.copy()
    for xy in polys:
        rr, cc = polygon(xy[:, 1], xy[:, 0], shape=image.shape[:2])
        out[rr, cc] = (out[rr, cc] * np.array([0.45, 0.35, 0.7])).astype(np.uint8)
    return out
