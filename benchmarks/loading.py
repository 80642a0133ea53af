"""Loading speed: prepared-store ``__getitem__`` vs raw reads, and MoNuSeg XML → label map.

Run:  python benchmarks/loading.py  [--n 200] [--repeats 5]

1. ``__getitem__`` of a prepared 256×256 patch (TIFF + .npy read, Sample built and validated) against a
   bare ``tifffile.imread`` + ``np.load`` of the *same* files, measured in the same run. Goal: ratio ≤ 2×.
2. MoNuSeg Aperio XML → instance map, seconds per 1000×1000 image. Uses the real files in
   ../shared/realdata/monuseg when present, else a generated XML of the same size (400 regions of ~200
   vertices). Goal: ≤ 0.5 s per image.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

import nucfuse_datasets as nf
from nucfuse_datasets.datasets._raster import rasterize
from nucfuse_datasets.datasets.monuseg import parse_aperio_xml

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "monuseg"


def bench_getitem(n: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ds = nf.get_dataset("synthetic", root=tmp, n_tiles=n, tile_size=256, progress=False)
        base = ds.store_path
        ids = ds.sample_ids

        def raw() -> None:
            for sid in ids:
                tifffile.imread(base / "images" / f"{sid}.tif")
                np.load(base / "instances" / f"{sid}.npy", allow_pickle=False)

        def api() -> None:
            for i in range(len(ds)):
                ds[i]

        raw()
        api()  # warm the page cache for both
        t_raw, t_api = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            raw()
            t_raw.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            api()
            t_api.append(time.perf_counter() - t0)
        r, a = statistics.median(t_raw) / n, statistics.median(t_api) / n
        print(f"__getitem__ (256x256 patch, {n} samples, median of {repeats}):")
        print(f"  raw tifffile.imread + np.load : {r * 1e6:8.1f} us/sample")
        print(f"  dataset[i] -> Sample          : {a * 1e6:8.1f} us/sample")
        print(f"  ratio                         : {a / r:8.2f}x   (goal <= 2x)")


def _synthetic_xml(path: Path, rng: np.random.Generator) -> None:
    parts = ['<Annotations MicronsPerPixel="0.25"><Annotation Id="1"><Regions>']
    t = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    for k in range(400):
        cx, cy = rng.uniform(0, 1000, 2)
        a, b = rng.uniform(5, 14, 2)
        parts.append(f'<Region Id="{k + 1}" Type="0"><Attributes/><Vertices>')
        xs, ys = cx + a * np.cos(t) + rng.uniform(-0.5, 0.5, t.size), cy + b * np.sin(t)
        parts.extend(f'<Vertex X="{x:.6f}" Y="{y:.6f}" Z="0"/>' for x, y in zip(xs, ys, strict=True))
        parts.append("</Vertices></Region>")
    parts.append("</Regions></Annotation></Annotations>")
    path.write_text("\n".join(parts))


def bench_xml(repeats: int) -> None:
    files = sorted(REALDATA.rglob("*.xml")) if REALDATA.is_dir() else []
    with tempfile.TemporaryDirectory() as tmp:
        if not files:
            files = [Path(tmp) / f"synthetic_{i}.xml" for i in range(3)]
            for i, p in enumerate(files):
                _synthetic_xml(p, np.random.default_rng(i))
            what = "generated XML, 400 regions x 200 vertices"
        else:
            what = f"real MoNuSeg XML from {REALDATA}"
        times = []
        for path in files:
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                regions, _ = parse_aperio_xml(path)
                rasterize(regions, (1000, 1000))
                best = min(best, time.perf_counter() - t0)
            times.append(best)
        print(f"MoNuSeg XML -> 1000x1000 label map ({len(files)} files, {what}):")
        print(f"  mean {statistics.mean(times):.3f} s/image, max {max(times):.3f} s   (goal <= 0.5 s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="number of 256x256 samples")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    bench_getitem(args.n, args.repeats)
    bench_xml(max(1, args.repeats // 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
