"""MoNuSeg Aperio XML -> 1000x1000 label map: ours against a minidom + skimage rasteriser, same run.

Run:  python benchmarks/monuseg_xml.py  [--repeats 5]

Uses the real MoNuSeg files in ../shared/realdata/monuseg (the script stops with a message when they are
absent). For every file, in the same process and interleaved:

* ours: ``parse_aperio_xml`` + ``rasterize`` (what MoNuSeg preparation runs);
* peer: the approach of torch-em's MoNuSeg loader, written here: ``xml.dom.minidom`` parses the file, each
  ``Region``'s ``Vertex`` X/Y attributes become a polygon, ``skimage.draw.polygon`` fills it with the next
  id, later regions overwriting earlier ones.

Both label maps must be identical. Times are min / median / max over files x repeats (seconds per file);
the ratio is the peer's median over ours.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from xml.dom import minidom

import numpy as np
from skimage.draw import polygon

from nucfuse_datasets.datasets._raster import rasterize
from nucfuse_datasets.datasets.monuseg import parse_aperio_xml

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "monuseg"
SHAPE = (1000, 1000)


def ours(path: Path) -> np.ndarray:
    regions, _ = parse_aperio_xml(path)
    return rasterize(regions, SHAPE)[0]


def peer(path: Path) -> np.ndarray:
    """minidom + skimage.draw.polygon, one region at a time (torch-em's approach, re-written)."""
    doc = minidom.parse(str(path))
    out = np.zeros(SHAPE, np.int32)
    for n, region in enumerate(doc.getElementsByTagName("Region"), start=1):
        vertices = region.getElementsByTagName("Vertex")
        xy = np.array([[float(v.getAttribute("X")), float(v.getAttribute("Y"))] for v in vertices])
        if len(xy) < 3 or xy[:, 0].max() < 0 or xy[:, 1].max() < 0:
            continue
        if xy[:, 0].min() > SHAPE[1] - 1 or xy[:, 1].min() > SHAPE[0] - 1:
            continue
        rr, cc = polygon(xy[:, 1], xy[:, 0], shape=SHAPE)
        out[rr, cc] = n
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    files = sorted(REALDATA.rglob("*.xml")) if REALDATA.is_dir() else []
    if not files:
        print(f"real MoNuSeg XML not found under {REALDATA}; nothing to time")
        return 2
    print(f"{len(files)} real MoNuSeg XML files from {REALDATA}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    t_ours: list[float] = []
    t_peer: list[float] = []
    identical = True
    for path in files:
        identical &= bool((ours(path) == peer(path)).all())
        for _ in range(args.repeats):  # interleaved, so both see the same machine load
            t0 = time.perf_counter()
            ours(path)
            t_ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            peer(path)
            t_peer.append(time.perf_counter() - t0)
    for name, ts in (("ours: parse_aperio_xml + rasterize", t_ours), ("peer: minidom + skimage.draw.polygon", t_peer)):
        print(f"  {name:38s} {min(ts):7.3f} / {statistics.median(ts):7.3f} / {max(ts):7.3f} s per file")
    ratio = statistics.median(t_peer) / statistics.median(t_ours)
    print(f"  ratio peer / ours: {ratio:.1f}x; identical label maps: {'yes' if identical else 'NO'}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
