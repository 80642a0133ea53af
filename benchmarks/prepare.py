"""Preparation speed with N worker processes, and peak memory against dataset size.

Run:  python benchmarks/prepare.py  [--tiles 96] [--repeats 3] [--workers 2] [--fold-tiles 100]

1. ``prepare(force=True, workers=N)`` of a synthetic dataset of ``--tiles`` 256×256 tiles (tile generation,
   validation, relabelling, TIFF/npy writes, sha256) against ``workers=1``, interleaved in one run. Goal:
   ≥ 0.8·N× on N idle cores. The stores are compared file by file (they must be byte-identical).
2. Peak RSS (``VmHWM``, Linux) of a fresh process preparing a PanNuke-layout fold (``Fold 1/images/fold1/``
   ``images.npy``, ``types.npy``, ``masks/fold1/masks.npy``; uint8 images, int16 masks, written here) of
   ``--fold-tiles`` tiles and of 4× as many. Goal: within 10 % (memory flat in dataset size: tiles stream
   through, one read each).

Times are min / median / max over ``--repeats`` runs (seconds per run and tiles per second).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import nucfuse_datasets as nf
from nucfuse_datasets.datasets.synthetic import generate_tile


def _tree(store: Path) -> dict[str, str]:
    return {
        str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(store.rglob("*"))
        if p.is_file()
    }


def bench_workers(tiles: int, workers: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ds = nf.get_dataset("synthetic", root=tmp, n_tiles=tiles, tile_size=256, progress=False)
        for w in (1, workers):  # warm-up: page cache, and the worker server's start (about a second, once)
            ds.prepare(force=True, workers=w)
        times: dict[int, list[float]] = {1: [], workers: []}
        trees = {}
        for _ in range(repeats):  # interleaved, so both see the same machine load
            for w in (1, workers):
                t0 = time.perf_counter()
                store = ds.prepare(force=True, workers=w)
                times[w].append(time.perf_counter() - t0)
                trees[w] = _tree(store.path)
        print(f"1. prepare(force=True) of {tiles} synthetic 256x256 tiles ({repeats} runs; s / run, tiles/s):")
        for w, ts in times.items():
            rates = [tiles / t for t in ts]
            print(
                f"   workers={w}: {min(ts):6.2f} / {statistics.median(ts):6.2f} / {max(ts):6.2f} s   "
                f"({min(rates):5.1f} / {statistics.median(rates):5.1f} / {max(rates):5.1f} tiles/s)"
            )
        speedup = statistics.median(times[1]) / statistics.median(times[workers])
        same = trees[1] == trees[workers]
        print(
            f"   speed-up {workers} workers / 1: {speedup:.2f}x (goal >= {0.8 * workers:.1f}x on {workers} idle "
            f"cores); byte-identical stores: {'yes' if same else 'NO'} ({len(trees[1])} files)"
        )


def write_fold(root: Path, n: int) -> None:
    """A PanNuke-layout fold 1 of ``n`` 256×256 tiles, written through memory maps (no RAM growth here)."""
    fold = root / "pannuke" / "Fold 1"
    (fold / "images" / "fold1").mkdir(parents=True)
    (fold / "masks" / "fold1").mkdir(parents=True)
    fmt = np.lib.format
    images = fmt.open_memmap(fold / "images" / "fold1" / "images.npy", "w+", np.uint8, (n, 256, 256, 3))
    masks = fmt.open_memmap(fold / "masks" / "fold1" / "masks.npy", "w+", np.int16, (n, 256, 256, 6))
    for i in range(n):
        image, inst, _ = generate_tile(256, 256, np.random.default_rng([7, i % 16]))
        images[i] = image
        masks[i, ..., 0] = inst
        masks[i, ..., 5] = inst == 0
    images.flush()
    masks.flush()
    del images, masks
    np.save(fold / "images" / "fold1" / "types.npy", np.array(["Breast"] * n))
    (fold / "README.md").write_text("PanNuke-layout fold for the memory benchmark\n")


# VmHWM is this process's own peak; ru_maxrss of a child started by fork + exec may carry the parent's.
_CHILD = """
import sys, warnings
warnings.simplefilter("ignore")
import nucfuse_datasets as nf
ds = nf.get_dataset("pannuke", root=sys.argv[1], split="fold1", progress=False)
hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print(len(ds), hwm)
"""


def bench_memory(n: int) -> None:
    peaks = {}
    for size in (n, 4 * n):
        with tempfile.TemporaryDirectory() as tmp:
            write_fold(Path(tmp), size)
            out = subprocess.run([sys.executable, "-c", _CHILD, tmp], capture_output=True, text=True, check=False)
            if out.returncode != 0:
                print(f"2. PanNuke-layout fold of {size} tiles: preparation failed:\n{out.stderr[-2000:]}")
                return
            tiles, kib = out.stdout.split()[-2:]
            peaks[size] = int(kib) / 1024
            print(f"2. PanNuke-layout fold of {size} tiles ({tiles} prepared): peak RSS {peaks[size]:.0f} MiB")
    ratio = peaks[4 * n] / peaks[n]
    print(f"   peak RSS {4 * n} tiles / {n} tiles: {ratio:.3f}   (goal <= 1.10)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fold-tiles", type=int, default=100)
    args = parser.parse_args(argv)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    bench_workers(args.tiles, args.workers, args.repeats)
    bench_memory(args.fold_tiles)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
