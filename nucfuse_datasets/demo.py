"""The offline demo behind ``make demo`` / ``nucfuse demo``: runs end to end on synthetic data."""

from __future__ import annotations

import tempfile
from pathlib import Path

from nucfuse_datasets._config import PathLike

__all__ = ["run_demo"]


def run_demo(out: PathLike = "demo-output", root: PathLike | None = None) -> int:
    """Prepare the synthetic dataset, load it through the public API and print its statistics.

    Args:
        out: folder for the report files.
        root: data root; a temporary folder when ``None`` (the demo never touches the user's cache).

    Returns:
        Process exit code (0 on success).
    """
    import nucfuse_datasets as nf

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nucfuse-demo-") as tmp:
        data_root = Path(root) if root is not None else Path(tmp)
        ds = nf.get_dataset("synthetic", root=data_root, n_tiles=12, tile_size=[256, (320, 400)], progress=False)
        nuclei = [ds.n_instances(i) for i in range(len(ds))]
        area = sum(h * w for h, w in (ds.tile_shape(i) for i in range(len(ds))))
        print("dataset   tiles  nuclei  density/256²  tile sizes")
        sizes = sorted({ds.tile_shape(i) for i in range(len(ds))})
        print(
            f"{ds.name:<9} {len(ds):>5}  {sum(nuclei):>6}  {sum(nuclei) / (area / 65536):>12.2f}  "
            + ", ".join(f"{h}×{w}" for h, w in sizes)
        )
        sample = ds[0]
        print(f"first sample: {sample}")
    return 0
