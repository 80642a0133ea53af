"""Stain normalisation throughput: nucfuse_datasets.transforms.stain against torchstain on the same 256×256 patches.

Run:  python benchmarks/stain.py  [--patches 90] [--repeats 5]

1. Single target: ``MacenkoNormalizer().fit(ref)`` against torchstain's numpy
   ``MacenkoNormalizer(backend="numpy")`` fitted on the same reference.
2. Multi-target Avg-post over 7 references: ``MacenkoNormalizer().fit(refs)`` against torchstain's
   torch ``MultiMacenkoNormalizer(norm_mode="avg-post")`` (inputs converted to CHW float tensors
   before timing, as that class requires).
3. ``StainAugment(refs, p=1)`` (a random reference per call), ours only.

Each line prints patches/s (median of ``--repeats`` passes over all patches), the ratio, and the
largest absolute difference between the two outputs over all patches. Everything runs on one thread
by default (ours never calls BLAS; torchstain's numpy path calls LAPACK/BLAS and its torch path uses
intra-op threads), so the comparison is like for like and less sensitive to other load; set
``NUCFUSE_BENCH_THREADS=2`` (or more) to let BLAS and torch use more threads. Patches are cut from the real
MoNuSeg tiles in ../shared/realdata/monuseg when present (a 3×3 grid of 256² patches per tile), else
synthesised with Beer–Lambert from random stain vectors.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

THREADS = os.environ.get("NUCFUSE_BENCH_THREADS", "1")
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, THREADS)  # before numpy loads BLAS

import numpy as np  # noqa: E402

from nucfuse_datasets.transforms.stain import MacenkoNormalizer, StainAugment  # noqa: E402

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "monuseg"
PATCH = 256


def real_tiles() -> list[np.ndarray]:
    from PIL import Image

    paths = sorted((REALDATA / "MoNuSeg 2018 Training Data" / "Tissue Images").glob("*.tif"))
    paths += sorted((REALDATA / "MoNuSegTestData").glob("*.tif"))
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def synthetic_tiles(n: int = 10, size: int = 1000) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        he = np.abs(np.array([[0.60, 0.22], [0.72, 0.80], [0.38, 0.55]]) + rng.normal(0, 0.05, (3, 2)))
        he /= np.linalg.norm(he, axis=0)
        conc = rng.gamma(1.5, 0.5, size=(2, size * size)) * (rng.random(size * size) < 0.7)
        out.append(np.clip(240 * np.exp(-(he @ conc)), 0, 255).astype(np.uint8).T.reshape(size, size, 3))
    return out


def patches_of(tiles: list[np.ndarray], limit: int) -> list[np.ndarray]:
    out = []
    for t in tiles:
        h, w = t.shape[:2]
        for y in np.linspace(0, h - PATCH, 3).astype(int):
            for x in np.linspace(0, w - PATCH, 3).astype(int):
                out.append(np.ascontiguousarray(t[y : y + PATCH, x : x + PATCH]))
    return out[:limit]


def rates(*runs: tuple[Callable[[Any], Any], list[Any]], repeats: int) -> list[float]:
    """Patches per second of each ``(fn, items)``: median of ``repeats`` passes, passes interleaved.

    Interleaving (a, b, a, b, ...) exposes both to the same background load, so the ratio is
    steadier than the absolute numbers on a shared machine.
    """
    for fn, items in runs:
        for it in items[:3]:
            fn(it)  # warm-up
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for k, (fn, items) in enumerate(runs):
            t0 = time.perf_counter()
            for it in items:
                fn(it)
            times[k].append(time.perf_counter() - t0)
    return [len(items) / statistics.median(t) for (_, items), t in zip(runs, times, strict=True)]


def report(name: str, ours: float, theirs: float | None, diff: str) -> None:
    line = f"  {name:<38} ours {ours:8.1f} patches/s"
    if theirs is not None:
        line += f" | torchstain {theirs:8.1f} patches/s | ratio {ours / theirs:5.2f}x"
    print(line + (f" | {diff}" if diff else ""))


def max_abs_diff(a: list[np.ndarray], b: list[np.ndarray | None]) -> str:
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if y is not None]
    if not pairs:
        return "no comparable outputs"
    d = [np.abs(x.astype(np.int16) - y.astype(np.int16)) for x, y in pairs]
    return (
        f"max |diff| {max(int(x.max()) for x in d)}, mean |diff| {np.mean([x.mean() for x in d]):.3f}"
        f" ({len(pairs)} patches)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patches", type=int, default=90)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    tiles = real_tiles() if REALDATA.is_dir() else []
    source = "real MoNuSeg tiles" if tiles else "synthetic tiles (real MoNuSeg not found)"
    if not tiles:
        tiles = synthetic_tiles()
    patches = patches_of(tiles, args.patches)
    refs = tiles[1:8] if len(tiles) >= 8 else tiles[:7]
    print(f"{len(patches)} patches of {PATCH}x{PATCH} from {source}; {args.repeats} timed passes each")

    try:
        import torch
        import torchstain

        torch.set_num_threads(int(THREADS))
    except ImportError:
        torch = torchstain = None
        print("  torchstain not installed (pip install 'nucfuse-datasets[stain]'): ours only")
    print(f"threads: BLAS {os.environ['OPENBLAS_NUM_THREADS']}, torch {THREADS} (NUCFUSE_BENCH_THREADS)")

    # 1. single target ------------------------------------------------------------------------
    ours1 = MacenkoNormalizer().fit(refs[0])
    out_ours = [ours1.normalize(p) for p in patches]
    if torchstain is not None:
        ts1 = torchstain.normalizers.MacenkoNormalizer(backend="numpy")
        ts1.fit(refs[0])

        def ts_single(p: np.ndarray) -> np.ndarray | None:
            try:
                return ts1.normalize(I=p, stains=False)[0]
            except Exception:  # torchstain raises on blank tiles
                return None

        out_ts = [ts_single(p) for p in patches]
        r_ours, r_ts = rates((ours1.normalize, patches), (ts_single, patches), repeats=args.repeats)
        report("single target (numpy vs numpy)", r_ours, r_ts, max_abs_diff(out_ours, out_ts))
    else:
        report("single target", rates((ours1.normalize, patches), repeats=args.repeats)[0], None, "")
    print(f"    fallbacks (tile returned unchanged): {ours1.n_fallbacks} of {ours1.n_calls} calls")

    # 2. multi-target Avg-post ----------------------------------------------------------------
    ours7 = MacenkoNormalizer().fit(refs)
    out_ours = [ours7.normalize(p) for p in patches]
    r_ours_only = None
    if torchstain is not None and torch is not None:
        try:
            ts7 = torchstain.normalizers.MultiMacenkoNormalizer(norm_mode="avg-post")
            ts7.fit([torch.from_numpy(r.copy()).permute(2, 0, 1).float() for r in refs])
            tensors = [torch.from_numpy(p.copy()).permute(2, 0, 1).float() for p in patches]

            def ts_multi(t: Any) -> Any:
                try:
                    return ts7.normalize(I=t, stains=False)[0]
                except Exception:
                    return None

            out_ts = [ts_multi(t) for t in tensors]
            out_ts_np = [None if o is None else o.numpy().astype(np.uint8) for o in out_ts]
            r_ours, r_ts = rates((ours7.normalize, patches), (ts_multi, tensors), repeats=args.repeats)
            label = f"Avg-post x{len(refs)} (numpy vs torch, {torch.get_num_threads()} thr)"
            report(label, r_ours, r_ts, max_abs_diff(out_ours, out_ts_np))
        except Exception as exc:  # pragma: no cover - depends on the installed torchstain
            r_ours_only = f"torchstain failed: {exc!r}"
    else:
        r_ours_only = ""
    if r_ours_only is not None:
        report(f"Avg-post x{len(refs)}", rates((ours7.normalize, patches), repeats=args.repeats)[0], None, r_ours_only)

    # 3. augmentation -----------------------------------------------------------------------------
    aug = StainAugment(refs, p=1.0, rng=0)
    report(f"StainAugment p=1, {len(refs)} refs", rates((aug.augment, patches), repeats=args.repeats)[0], None, "")


if __name__ == "__main__":
    main()
