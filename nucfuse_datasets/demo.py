"""The offline demo behind ``make demo`` / ``nucfuse demo``: the whole NucFuse pipeline on synthetic data.

Three synthetic "sources" of different tile sizes and nucleus densities stand in for the real datasets. The demo
prepares them through the public API, builds a NucFuse-style test set (14 whole tiles per source) and training set
(the other tiles in 256×256 patches, 80/20 split), scores the classical baseline with ``NucFuseTest.evaluate``,
prints the leaderboard and per-dataset statistics, and writes the report files. No network, no real data.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from nucfuse_datasets._config import PathLike

__all__ = ["DEMO_SOURCES", "run_demo"]

#: subset tag -> synthetic dataset options (20 tiles each: 14 for the test set, 6 for training)
DEMO_SOURCES = {
    "synthetic-sparse": {"n_tiles": 20, "tile_size": [256, (256, 320)], "seed": 1, "density": 0.6},
    "synthetic-dense": {"n_tiles": 20, "tile_size": (300, 400), "seed": 2, "density": 1.6},
    "synthetic-large": {"n_tiles": 20, "tile_size": 512, "seed": 3, "density": 1.0},
}


def run_demo(out: PathLike = "demo-output", root: PathLike | None = None) -> int:
    """Run the demo; returns a process exit code (0 on success).

    Args:
        out: folder for ``report.json``, ``report.csv``, ``report.md`` and ``statistics.md``.
        root: data root; a temporary folder when ``None`` (the demo never touches the user's cache).
    """
    import nucfuse_datasets as nf
    from nucfuse_datasets.baselines import ClassicalBaseline

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nucfuse-demo-") as tmp:
        data_root = Path(root) if root is not None else Path(tmp)
        print(f"1. Preparing {len(DEMO_SOURCES)} synthetic sources under {data_root}")
        sources = {
            tag: nf.get_dataset("synthetic", root=data_root, progress=False, **opts)
            for tag, opts in DEMO_SOURCES.items()
        }
        stats = ["| source | tiles | nuclei | density per 256² | tile sizes |", "|---|---:|---:|---:|---|"]
        for tag, ds in sources.items():
            nuclei = sum(ds.n_instances(i) for i in range(len(ds)))
            shapes = [ds.tile_shape(i) for i in range(len(ds))]
            area = sum(h * w for h, w in shapes)
            sizes = ", ".join(f"{h}×{w}" for h, w in sorted(set(shapes)))
            stats.append(f"| {tag} | {len(ds)} | {nuclei} | {nuclei / (area / 65536):.2f} | {sizes} |")
        print("\n".join(stats))

        print("\n2. Building NucFuse-style test and training sets")
        test = nf.NucFuseTest(data_root, datasets=sources)
        train = nf.NucFuseTrain(data_root, datasets=sources, split="train")
        val = nf.NucFuseTrain(data_root, datasets=sources, split="val")
        print(f"   {test}")
        print(f"   train: {train.counts()}")
        print(f"   val:   {val.counts()}")
        print(f"   test-set id hash: {test.ids_sha256}")

        print("\n3. Scoring the classical baseline (haematoxylin threshold + watershed)")
        report = test.evaluate(ClassicalBaseline(), model="classical-baseline", train_set="none", progress=False)
        print()
        print(report.to_markdown())
        paths = report.save(out_dir)
        (out_dir / "statistics.md").write_text("\n".join(stats) + "\n")
        print("4. Report files: " + ", ".join(str(p) for p in [*paths.values(), out_dir / "statistics.md"]))
    return 0
