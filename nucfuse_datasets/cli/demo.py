"""The offline demo behind ``make demo`` / ``nucfuse demo``: the whole NucFuse pipeline on synthetic data.

Three synthetic "sources" of different tile sizes and nucleus densities stand in for the real datasets. The demo
prepares them through the public API, builds a NucFuse-style test set (14 whole tiles per source) and training set
(the other tiles in 256×256 patches, 80/20 split), scores the classical baseline with ``NucFuseTest.evaluate``,
prints the leaderboard and per-dataset statistics, and writes the report files and pictures (ground truth next to
the baseline's prediction on one tile per source, and the per-subset scores as a bar chart; with the ``plot``
extra). No network, no real data.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from nucfuse_datasets.io.config import PathLike

__all__ = ["DEMO_SOURCES", "run_demo"]

#: subset tag -> synthetic dataset options (20 tiles each: 14 for the test set, 6 for training)
DEMO_SOURCES: dict[str, dict[str, Any]] = {
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
        pictures = write_pictures(test, report, ClassicalBaseline(), out_dir)
        if pictures:
            print("5. Pictures: " + ", ".join(str(p) for p in pictures))
        else:
            print("5. Pictures skipped: install the plot extra (pip install 'nucfuse-datasets[plot]')")
    return 0


def write_pictures(test: Any, report: Any, predict_fn: Any, out_dir: Path) -> list[Path]:
    """PNG pictures: ground truth vs ``predict_fn`` on the first test tile of each subset, and a scores bar chart.

    Returns the written paths (none when matplotlib is missing).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    from nucfuse_datasets.viz import plot_sample

    written: list[Path] = []
    done: set[str] = set()
    for i in range(len(test)):
        subset = test.subset_of(i)
        if subset in done:
            continue
        done.add(subset)
        sample = test.load_sample(i)
        fig = plot_sample(
            sample,
            prediction=predict_fn(sample.image),
            suptitle=f"{subset}: ground truth (green) vs classical baseline (yellow)",
            figsize=(12, 6.4),
        )
        path = out_dir / f"tile-{subset}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    rows = report.leaderboard(metrics=("pq", "aji", "dice_2"))
    fig, ax = plt.subplots(figsize=(9, 4.8))
    width = 0.27
    for k, (metric, label) in enumerate((("pq", "PQ"), ("aji", "AJI"), ("dice_2", "Dice"))):
        xs = [j + (k - 1) * width for j in range(len(rows))]
        bars = ax.bar(xs, [r[metric] for r in rows], width, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
    ax.set_xticks(range(len(rows)), [f"{r['subset']}\n({r['n_images']} tiles)" for r in rows])
    ax.set_ylabel("score × 100 (mean over tiles)")
    ax.set_ylim(0, 100)
    ax.set_title("Classical baseline on the demo NucFuse-test, per subset")
    ax.legend(loc="upper right")
    fig.tight_layout()
    path = out_dir / "scores.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written
