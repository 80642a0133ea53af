"""Preparation speed with N worker processes, and peak memory against dataset size.

Run:  python benchmarks/prepare.py  [--tiles 96] [--repeats 3] [--workers 2] [--fold-tiles 100] [--consep-tiles 12]

Every dataset's converter yields one job per native tile, so ``prepare(workers=N)`` reads, decodes, rasterises
and writes tiles in N processes. Each line below is ``prepare(force=True, workers=N)`` against ``workers=1``,
interleaved in one run (both see the same machine load), after one warm-up of each (page cache, and the worker
server's start, about a second, once). Goal: ≥ 0.8·N× on N idle cores. The stores of both runs are compared file
by file (they must be byte-identical).

1. synthetic: ``--tiles`` 256×256 tiles rendered in the job (CPU-bound generation, no input files).
2. MoNuSeg from the real files in ``../shared/realdata/monuseg`` (8 + 2 tiles of 1000×1000: LZW/PackBits TIFF
   decode, Aperio XML parse and rasterisation), linked into a temporary root; skipped with a message if absent.
3. DSB 2018 from the real files in ``../shared/realdata/dsb2018`` (115 image folders: 107 H&E tiles of 256×320
   built from 4,768 one-nucleus mask PNGs, 8 fluorescence images read and skipped), linked the same way.
4. CoNSeP layout generated here: ``--consep-tiles`` 1000×1000 tiles as PNG + MATLAB ``.mat`` (``inst_map`` and
   ``type_map`` stored as double, ``inst_type``) split between Train and Test, as the 2020 release stores them.
5. Peak RSS (``VmHWM``, Linux) of a fresh process preparing a PanNuke-layout fold (``Fold 1/images/fold1/``
   ``images.npy``, ``types.npy``, ``masks/fold1/masks.npy``; uint8 images, int16 masks, written here) of
   ``--fold-tiles`` tiles and of 4× as many. Goal: within 10 % (memory flat in dataset size: tiles stream
   through, one read each).

Times are min / median / max over ``--repeats`` runs (seconds per run and tiles per second).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.io

import nucfuse_datasets as nf
from nucfuse_datasets.datasets.synthetic import generate_tile
from nucfuse_datasets.errors import CountMismatchWarning

#: The real native samples (see their README), read in place.
REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"


def _tree(store: Path) -> dict[str, str]:
    return {
        str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(store.rglob("*"))
        if p.is_file()
    }


def _timed(label: str, tiles: int, prepare: Callable[[int], Path], workers: int, repeats: int) -> None:
    """Time ``prepare(w)`` for w = 1 and ``workers``, interleaved; print min/median/max and the speed-up."""
    first = {}
    for w in (1, workers):  # warm-up: page cache, and the worker server's start (about a second, once)
        t0 = time.perf_counter()
        prepare(w)
        first[w] = time.perf_counter() - t0
    times: dict[int, list[float]] = {1: [], workers: []}
    cpu: dict[int, list[float]] = {1: [], workers: []}  # this process's CPU time (with workers: the parent's only)
    trees = {}
    for _ in range(repeats):  # interleaved, so both see the same machine load
        for w in (1, workers):
            c0, t0 = time.process_time(), time.perf_counter()
            store = prepare(w)
            times[w].append(time.perf_counter() - t0)
            cpu[w].append(time.process_time() - c0)
            trees[w] = _tree(store)
    print(f"{label} ({repeats} runs after a warm-up; s / run, tiles/s):")
    print(f"   warm-up: workers=1 {first[1]:.2f} s, workers={workers} {first[workers]:.2f} s")
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
    share = statistics.median(cpu[workers]) / statistics.median(cpu[1])  # the part that stays serial
    print(
        f"   parent CPU with {workers} workers: {share:.1%} of the 1-worker CPU time "
        f"(Amdahl bound on {workers} idle cores: {1 / (share + (1 - share) / workers):.2f}x)"
    )


def _preparer(name: str, root: Path, **options: object) -> Callable[[int], Path]:
    """``workers -> store path``: prepare every split of ``name`` under ``root`` again (force=True)."""
    cls = nf.get_dataset_class(name)
    ds = cls.deferred(root, progress=False, **options)
    return lambda w: ds.prepare(force=True, splits=cls.splits, workers=w).path


def bench_workers(tiles: int, workers: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ds = nf.get_dataset("synthetic", root=tmp, n_tiles=tiles, tile_size=256, progress=False)
        label = f"1. synthetic, {tiles} tiles of 256x256"
        _timed(label, tiles, lambda w: ds.prepare(force=True, workers=w).path, workers, repeats)


def bench_real(label: str, name: str, folders: list[str], workers: int, repeats: int) -> None:
    """Prepare ``name`` from real native folders of ``../shared/realdata/<name>``, linked into a temporary root."""
    src = REALDATA / name
    if not all((src / f).is_dir() for f in folders):
        print(f"{label}: skipped, real files not found at {src}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / name).mkdir()
        for folder in folders:  # read in place, never copied
            (Path(tmp) / name / folder).symlink_to((src / folder).resolve(), target_is_directory=True)
        prepare = _preparer(name, Path(tmp))
        tiles = len(json.loads((prepare(1) / "manifest.json").read_text())["samples"])
        _timed(f"{label}, real files ({src}), {tiles} tiles", tiles, prepare, workers, repeats)


def write_consep(root: Path, n: int, size: int = 1000) -> None:
    """A CoNSeP-layout copy of ``n`` tiles (``size``², PNG + ``.mat`` with double maps), Train then Test."""
    from PIL import Image

    top = root / "consep" / "CoNSeP"
    for i in range(n):
        split, k = ("Train", i + 1) if i < n - n // 3 else ("Test", i + 1 - (n - n // 3))
        image, inst, classes = generate_tile(size, size, np.random.default_rng([11, i]), density=1.3)
        ids = np.unique(inst)[1:]
        dense = np.searchsorted(np.concatenate([[0], ids]), inst).astype(np.float64)  # ids 1..N, as released
        types = np.array([classes[int(j)] for j in ids], float).reshape(-1, 1)
        type_map = np.concatenate([[0.0], types[:, 0]])[dense.astype(np.int64)]
        for sub in ("Images", "Labels"):
            (top / split / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(top / split / "Images" / f"{split.lower()}_{k}.png")
        scipy.io.savemat(
            top / split / "Labels" / f"{split.lower()}_{k}.mat",
            {"inst_map": dense, "type_map": type_map, "inst_type": types},
        )


def bench_consep(n: int, workers: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        write_consep(Path(tmp), n)
        label = f"4. CoNSeP layout (generated), {n} tiles of 1000x1000 (PNG + double .mat)"
        _timed(label, n, _preparer("consep", Path(tmp)), workers, repeats)


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
from nucfuse_datasets.errors import CountMismatchWarning
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
                print(f"5. PanNuke-layout fold of {size} tiles: preparation failed:\n{out.stderr[-2000:]}")
                return
            tiles, kib = out.stdout.split()[-2:]
            peaks[size] = int(kib) / 1024
            print(f"5. PanNuke-layout fold of {size} tiles ({tiles} prepared): peak RSS {peaks[size]:.0f} MiB")
    ratio = peaks[4 * n] / peaks[n]
    print(f"   peak RSS {4 * n} tiles / {n} tiles: {ratio:.3f}   (goal <= 1.10)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fold-tiles", type=int, default=100)
    parser.add_argument("--consep-tiles", type=int, default=12)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", CountMismatchWarning)  # subsets and generated copies: counts differ on purpose
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    common = (args.workers, args.repeats)
    bench_workers(args.tiles, *common)
    bench_real("2. MoNuSeg (1000x1000)", "monuseg", ["MoNuSeg 2018 Training Data", "MoNuSegTestData"], *common)
    bench_real("3. DSB 2018 (one PNG per nucleus)", "dsb2018", ["stage1_train"], *common)
    bench_consep(args.consep_tiles, *common)
    bench_memory(args.fold_tiles)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
