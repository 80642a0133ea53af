"""Augmentation throughput per 256² patch: the recipes on maintained libraries against the hand-written "before".

Run:  python benchmarks/augment.py  [--patches 32] [--repeats 5]

"Before" is the hand-written implementation of ``examples/{hovernext,cellvit}/augment.py`` as of commit
``BEFORE`` (read with ``git show``, so this needs the repository's history); "after" is the current one
(kornia + torchvision v2 for HoVerNeXt, albumentations for CellViT). Both run on the same Samples: 256²
synthetic H&E-like patches with instance maps, every sample augmented (HoVerNeXt ``p=1``, per sample and per
batch of 5 as run; CellViT with its step probabilities as run, and with every step on). Each line prints
patches/s (median of ``--repeats`` interleaved passes) and the ratio after / before. One torch thread by
default (``NUCFUSE_BENCH_THREADS`` to change).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

THREADS = os.environ.get("NUCFUSE_BENCH_THREADS", "1")
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, THREADS)

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BEFORE = "d416eb0f826ed486e6ae94af92621bc109efb207"  # last commit with the hand-written augmentations


def load_before(path: str, name: str) -> Any:
    """Import ``path`` as it was at ``BEFORE`` (module ``name``)."""
    try:
        source = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{BEFORE}:{path}"], check=True, capture_output=True, text=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        sys.exit(f"cannot read {path} at {BEFORE} ({exc}); run from a full clone of the repository")
    if name != "sample_ops_before":  # the helpers they used, as they were then
        if "sample_ops_before" not in sys.modules:
            load_before("examples/common/sample_ops.py", "sample_ops_before")
        source = source.replace("from examples.common.sample_ops import", "from sample_ops_before import")
    folder = Path(tempfile.mkdtemp())
    (folder / f"{name}.py").write_text(source)
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def rates(runs: list[tuple[Any, list[Any]]], repeats: int) -> list[float]:
    """Patches/s of each ``(fn, items)``: median of ``repeats`` interleaved passes (after one warm-up pass)."""
    for fn, items in runs:
        for it in items[:4]:
            fn(it)
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for k, (fn, items) in enumerate(runs):
            t0 = time.perf_counter()
            for it in items:
                fn(it)
            times[k].append(len(items) / (time.perf_counter() - t0))
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patches", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(int(THREADS))
    warnings.simplefilter("ignore")

    import nucfuse_datasets as nf
    from examples.cellvit.augment import CellViTAugment
    from examples.hovernext.augment import HoVerNeXtAugment, HoVerNeXtBatchAugment

    old_hv = load_before("examples/hovernext/augment.py", "hovernext_augment_before")
    old_cv = load_before("examples/cellvit/augment.py", "cellvit_augment_before")
    root = Path(tempfile.mkdtemp())
    ds = nf.get_dataset("synthetic", root=root, n_tiles=args.patches, tile_size=256, progress=False)
    samples = [ds[i] for i in range(len(ds))]
    torch.manual_seed(0)
    print(f"augmentation throughput, {len(samples)} patches of 256², {THREADS} thread(s), median of {args.repeats}")
    for label, before, after in (
        ("HoVerNeXt (p=1)", old_hv.HoVerNeXtAugment(p=1.0), HoVerNeXtAugment(p=1.0)),
        ("CellViT (as run)", old_cv.CellViTAugment(), CellViTAugment()),
        (
            "CellViT (every step)",
            old_cv.CellViTAugment(probabilities=dict.fromkeys(CellViTAugment.P, 1.0)),
            CellViTAugment(probabilities=dict.fromkeys(CellViTAugment.P, 1.0)),
        ),
    ):
        report(label, *rates([(before, samples), (after, samples)], args.repeats))
    batches = [samples[i : i + 5] for i in range(0, len(samples) - 4, 5)]  # batch size 5, as run
    before = old_hv.HoVerNeXtBatchAugment(old_hv.HoVerNeXtAugment(p=1.0))
    after = HoVerNeXtBatchAugment(HoVerNeXtAugment(p=1.0))
    r_before, r_after = rates([(before, batches), (after, batches)], args.repeats)
    report("HoVerNeXt batch of 5", 5 * r_before, 5 * r_after)


def report(label: str, r_before: float, r_after: float) -> None:
    print(
        f"{label:22s} before {r_before:8.1f} patches/s ({1000 / r_before:6.2f} ms)   "
        f"after {r_after:8.1f} patches/s ({1000 / r_after:6.2f} ms)   ratio after/before {r_after / r_before:5.2f}x"
    )


if __name__ == "__main__":
    main()
