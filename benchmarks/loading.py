"""Loading speed: prepared-store ``ds[i]``, ``collate`` and the ``DataLoader``, each against its bare peer.

Run:  python benchmarks/loading.py  [--n 1024] [--n-transformed 256] [--repeats 5] [--batch 8] [--only-dataloader]

All figures are measured in one run on one prepared synthetic store of 256×256 patches:

1. ``ds[i]`` (TIFF + ``.npy`` reads, Sample built and validated) against a bare ``tifffile.imread`` +
   ``np.load`` of the *same* files (image, instance map, class lookup and ignore mask where the sample has
   them). Goal: ratio ≤ 1.2×.
2. ``collate`` of ``--batch`` Samples with torch's default thread count against the field's usual
   ``torch.stack`` of permuted ``torch.from_numpy`` views, run with the default thread count and with one
   thread. Goal: no thread pathology (ours close to the one-thread figure whatever the load).
3. A ``DataLoader`` (``batch_size=--batch``, ``collate_fn=collate``, torch's own transfer of worker batches)
   over the store with ``num_workers=0`` against a bare ``ds[i]`` loop timed between its epochs (goal: within
   1.5×), and with 2 workers against 0 workers, for three pipelines: no transform (0.4 ms samples, where the
   transfer between processes costs about what the work costs), a torchvision v2 pipeline (flips, affine,
   colour jitter, blur) and an albumentations pipeline (flips, rot90, affine, colour jitter, blur), both through
   the library's adapters, as people train. Epochs of the loaders and the bare loop are interleaved; the CPU time
   per batch (main process + workers) is printed with each, and from it the speed-up two idle cores would allow.

Times are min / median / max over ``--repeats`` runs; ratios use the medians. An epoch is ``--n`` patches
(1,024 by default, 128 batches): every epoch of a persistent loader starts by filling the workers' pipeline
and ends with one worker idle, which weighs on epochs of a few dozen batches (``--n 256``) more than on the
thousands of patches of a real training epoch. MoNuSeg XML → label map is
timed by ``benchmarks/monuseg_xml.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import tifffile
import torch

import nucfuse_datasets as nf
from nucfuse_datasets.schema import collate


def _times(fn: Callable[[], Any], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _fmt(ts: list[float], scale: float, unit: str) -> str:
    return f"{min(ts) * scale:8.2f} / {statistics.median(ts) * scale:8.2f} / {max(ts) * scale:8.2f} {unit}"


def _same_files(ds: Any) -> list[tuple[Any, list[Any]]]:
    base = ds.store_path
    files = []
    for i, sid in enumerate(ds.sample_ids):
        arrays = [base / "instances" / f"{sid}.npy"]
        sample = ds[i]
        if sample.classes is not None:
            arrays.append(base / "classes" / f"{sid}.npy")
        if sample.ignore is not None:
            arrays.append(base / "ignore" / f"{sid}.npy")
        files.append((base / "images" / f"{sid}.tif", arrays))
    return files


def bench_getitem(ds: Any, repeats: int) -> float:
    files = _same_files(ds)
    n = len(ds)

    def raw() -> None:
        for tif, arrays in files:
            tifffile.imread(tif)
            for path in arrays:
                np.load(path, allow_pickle=False)

    def api() -> None:
        for i in range(n):
            ds[i]

    raw()
    api()  # warm the page cache for both
    t_raw, t_api = [], []
    for _ in range(repeats):  # interleaved, so both see the same machine load
        t_raw += _times(raw, 1)
        t_api += _times(api, 1)
    ratio = statistics.median(t_api) / statistics.median(t_raw)
    print(f"1. ds[i], 256x256 patch ({n} samples per run, {repeats} runs; us/sample min / median / max):")
    print(f"   raw tifffile.imread + np.load (same files) {_fmt(t_raw, 1e6 / n, 'us')}")
    print(f"   ds[i] -> validated Sample                  {_fmt(t_api, 1e6 / n, 'us')}")
    print(f"   ratio ds[i] / raw: {ratio:.2f}x   (goal <= 1.2x)")
    return n / statistics.median(t_api)


def _stack_permuted(samples: list[Any]) -> Any:
    """The field's usual collate: permuted views of each image, then torch.stack."""
    images = torch.stack([torch.from_numpy(s.image).permute(2, 0, 1) for s in samples])
    instances = torch.stack([torch.from_numpy(s.instances) for s in samples])
    return images, instances


def bench_collate(ds: Any, batch: int, repeats: int) -> None:
    samples = [ds[i] for i in range(batch)]
    reps = max(20, 10 * repeats)
    threads = torch.get_num_threads()
    res: dict[str, list[float]] = {"collate": [], "stack": [], "collate1": [], "stack1": []}
    for _ in range(reps):  # interleaved, so all four see the same machine load
        res["collate"] += _times(lambda: collate(samples), 1)
        res["stack"] += _times(lambda: _stack_permuted(samples), 1)
        torch.set_num_threads(1)
        try:
            res["collate1"] += _times(lambda: collate(samples), 1)
            res["stack1"] += _times(lambda: _stack_permuted(samples), 1)
        finally:
            torch.set_num_threads(threads)
    out = collate(samples)
    ref = _stack_permuted(samples)
    same = torch.equal(out["image"], ref[0]) and torch.equal(out["instances"], ref[1])
    med = {k: statistics.median(v) for k, v in res.items()}
    print(f"2. collate of {batch} Samples of 256x256 ({reps} runs; ms min / median / max):")
    print(f"   collate, {threads} torch threads                  {_fmt(res['collate'], 1e3, 'ms')}")
    print(f"   collate, 1 torch thread                   {_fmt(res['collate1'], 1e3, 'ms')}")
    print(f"   torch.stack of permuted views, {threads} threads   {_fmt(res['stack'], 1e3, 'ms')}")
    print(f"   torch.stack of permuted views, 1 thread    {_fmt(res['stack1'], 1e3, 'ms')}")
    print(
        f"   collate default threads / 1 thread: {med['collate'] / med['collate1']:.2f}x "
        f"(permuted stack: {med['stack'] / med['stack1']:.1f}x); identical tensors: {'yes' if same else 'NO'}"
    )


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (Linux ``/proc``; 0 where unreadable)."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            pass
    return total


class _Picklable:
    """Module-level wrapper so that the transform pipelines pickle into spawned workers too."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.fn: Any = None

    def __call__(self, sample: Any) -> Any:
        if self.fn is None:
            self.fn = _pipeline(self.kind)
        return self.fn(sample)


def _pipeline(kind: str) -> Any:
    """A realistic training pipeline on Samples (what users run), through the library's adapters."""
    if kind == "torchvision":
        from torchvision import tv_tensors
        from torchvision.transforms import v2

        from nucfuse_datasets.transforms import TorchVision

        fill = {tv_tensors.Image: 255, tv_tensors.Mask: 0}
        return TorchVision(
            v2.Compose(
                [
                    v2.RandomHorizontalFlip(),
                    v2.RandomVerticalFlip(),
                    v2.RandomAffine(degrees=180, translate=(0.05, 0.05), scale=(0.8, 1.2), shear=5, fill=fill),
                    v2.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.2, hue=0.04),
                    v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.5))], p=0.5),
                ]
            )
        )
    if kind == "albumentations":
        import albumentations as A

        from nucfuse_datasets.transforms import Albumentations

        return Albumentations(
            A.Compose(
                [
                    A.HorizontalFlip(),
                    A.VerticalFlip(),
                    A.RandomRotate90(),
                    A.Affine(rotate=(-180, 180), scale=(0.8, 1.2), shear=(-5, 5), fill=255, fill_mask=0, p=0.8),
                    A.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.2, hue=0.04, p=0.8),
                    A.GaussianBlur(blur_limit=(3, 5), p=0.5),
                ]
            )
        )
    raise ValueError(kind)


PIPELINES = {
    "bare (no transform)": None,
    "torchvision v2: flips, affine, colour jitter, blur": "torchvision",
    "albumentations: flips, rot90, affine, colour jitter, blur": "albumentations",
}


def bench_dataloader(ds: Any, batch: int, repeats: int, kind: str | None, label: str) -> dict[str, float]:
    """Interleaved epochs of 0 and 2 workers (torch's transfer) and a bare ds[i] loop, with one pipeline."""
    from torch.utils.data import DataLoader

    ds.transforms = _Picklable(kind) if kind else None
    configs = {"0 workers": 0, "2 workers": 2}
    loaders, workers = {}, {}
    for name, n_workers in configs.items():
        loader = DataLoader(
            ds, batch_size=batch, collate_fn=collate, num_workers=n_workers, persistent_workers=n_workers > 0
        )
        it = iter(loader)  # warm-up epoch (starts the workers)
        for _ in it:
            pass
        loaders[name], workers[name] = loader, [w.pid for w in getattr(it, "_workers", [])]
    rates: dict[str, list[float]] = {name: [] for name in configs}
    cpu: dict[str, list[float]] = {name: [] for name in configs}
    n_batches = -(-len(ds) // batch)
    bare: list[float] = []

    def bare_loop() -> None:
        for i in range(len(ds)):
            ds[i]

    for _ in range(repeats):  # interleaved, so the loaders and the bare ds[i] loop see the same machine load
        bare += [len(ds) / t for t in _times(bare_loop, 1)]
        for name, loader in loaders.items():
            c0, w0 = time.process_time(), _cpu_seconds(workers[name])
            ts = _times(lambda loader=loader: [None for _ in loader], 1)
            rates[name].append(len(ds) / ts[0])
            cpu[name].append((time.process_time() - c0 + _cpu_seconds(workers[name]) - w0) / n_batches)
    loaders.clear()
    ds.transforms = None
    med = {name: statistics.median(r) for name, r in rates.items()}
    r0 = med["0 workers"]
    print(f"   {label}: {repeats} interleaved epochs of {len(ds)}, samples/s min / median / max")
    for name, rs in rates.items():
        print(
            f"     {name:10s} {min(rs):7.0f} / {statistics.median(rs):7.0f} / {max(rs):7.0f}"
            f"   CPU (main + workers) {statistics.median(cpu[name]) * 1e3:6.2f} ms/batch"
        )
    bare_rate = statistics.median(bare)
    print(f"     bare ds[i] {min(bare):7.0f} / {bare_rate:7.0f} / {max(bare):7.0f}")
    c0, c2 = statistics.median(cpu["0 workers"]), statistics.median(cpu["2 workers"])
    print(
        f"     bare ds[i] / 0 workers {bare_rate / r0:.2f}x;  2 workers / 0 workers {med['2 workers'] / r0:.2f}x;"
        f"  CPU-time bound 2 x CPU(0) / CPU(2) {2 * c0 / c2:.2f}x"
    )
    return {"speedup": med["2 workers"] / r0, "bare_ratio": bare_rate / r0, "per_sample_ms": 1e3 / bare_rate}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1024, help="number of 256x256 samples (one epoch)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--n-transformed", type=int, default=256, help="samples per epoch with a transform pipeline (slower)"
    )
    parser.add_argument("--only-dataloader", action="store_true", help="skip sections 1 and 2")
    args = parser.parse_args(argv)
    print(
        f"numpy {np.__version__}, torch {torch.__version__}, tifffile {tifffile.__version__}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        ds = nf.get_dataset("synthetic", root=tmp, n_tiles=args.n, tile_size=256, progress=False)
        if not args.only_dataloader:
            bench_getitem(ds, args.repeats)
            bench_collate(ds, args.batch, args.repeats)
        print(f"3. DataLoader, batch {args.batch}, collate_fn=collate, torch's worker transfer:")
        small = nf.get_dataset("synthetic", root=tmp, n_tiles=args.n_transformed, tile_size=256, progress=False)
        for label, kind in PIPELINES.items():
            out = bench_dataloader(ds if kind is None else small, args.batch, args.repeats, kind, label)
            if kind is None:
                print(
                    f"     goals: bare ds[i] / 0 workers <= 1.5x; 2 workers / 0 workers >= 1.6x on two idle cores."
                    f" At {out['per_sample_ms']:.2f} ms a sample, the per-batch transfer between processes costs"
                    " about as much as the work it spreads: workers barely pay off without a transform."
                )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
