"""Benchmark: ``evaluate_pair`` against the metric tools users would otherwise run, in one process.

Run from the repository root (peers come with the ``bench`` extra: ``pip install -e .[bench]``)::

    python benchmarks/metrics_peers.py            # full run
    python benchmarks/metrics_peers.py --quick    # fewer repeats

Peers, each timed on the same maps in the same run:

* ``stardist.matching.matching(gt, pred, thresh=0.5)``: stardist's PQ family (TP/FP/FN,
  precision, recall, F1, mean matched IoU, PQ). No TensorFlow is imported.
* ``torchmetrics.functional.detection.panoptic_quality`` (one "thing" class, background as
  "stuff"), CPU. Skipped at 2000x2000, where one call takes tens of seconds.

``evaluate_pair`` computes **all** our metrics (PQ/DQ/SQ, AJI, AJI+, Dice 1 and 2, precision,
recall) while the peers compute their PQ family only. Before timing, the script checks that the
peers agree with us: stardist's TP/FP/FN and matched-IoU sum equal ours with
``match="inclusive"`` (its convention), torchmetrics' PQ equals ours without the ``1e-6``
terms (both peers round through float32). Times are min / median / max over the repeats; the
ratio is the peer's median over ours.

This is not a unit test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from metrics import make_pair  # benchmarks/metrics.py: random realistic maps

from nucfuse_datasets.metrics import evaluate_pair


def _times(fn: Callable[[], Any], repeats: int) -> list[float]:
    fn()  # warm-up (imports, numba compilation in stardist, allocator)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _fmt(ts: list[float]) -> str:
    return f"{min(ts) * 1e3:8.2f} / {statistics.median(ts) * 1e3:8.2f} / {max(ts) * 1e3:8.2f} ms"


def _torchmetrics_pq(gt: np.ndarray, pred: np.ndarray) -> float:
    import torch
    from torchmetrics.functional.detection import panoptic_quality

    def enc(m: np.ndarray) -> Any:
        return torch.from_numpy(np.stack([(m > 0).astype(np.int64), m.astype(np.int64)], -1))[None]

    return float(panoptic_quality(enc(pred), enc(gt), things={1}, stuffs={0}, return_per_class=True)[0, 0])


def _check(gt: np.ndarray, pred: np.ndarray, matching: Any, with_tm: bool) -> str:
    ours = evaluate_pair(gt, pred, match="inclusive")
    ref = matching(gt, pred, thresh=0.5)
    same = (ours.tp, ours.fp, ours.fn) == (ref.tp, ref.fp, ref.fn)
    same &= abs(ours.sum_iou - ref.mean_true_score * ref.n_true) <= 1e-5 * max(1.0, ours.sum_iou)  # float32
    parts = [f"stardist agrees: {'yes' if same else 'NO'}"]
    if with_tm:
        strict = evaluate_pair(gt, pred)
        denom = strict.tp + 0.5 * strict.fp + 0.5 * strict.fn
        pq_no_eps = strict.sum_iou / denom if denom else 0.0
        parts.append(f"torchmetrics agrees: {'yes' if abs(_torchmetrics_pq(gt, pred) - pq_no_eps) < 1e-6 else 'NO'}")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    try:
        import stardist
        import torchmetrics
        from stardist.matching import matching
    except ImportError as exc:
        print(f"peers missing ({exc}); install them with: pip install -e .[bench]")
        return 2

    rng = np.random.default_rng(args.seed)
    print(
        f"numpy {np.__version__}, stardist {stardist.__version__}, torchmetrics {torchmetrics.__version__}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    print("times: min / median / max; ratio = peer median / evaluate_pair median")
    configs = [(256, 40, 40, 5), (1000, 500, 11, 3), (2000, 2000, 7, 0)]
    if args.quick:
        configs = [(256, 40, 15, 2), (1000, 500, 5, 1), (2000, 2000, 3, 0)]
    ok = True
    worst = float("inf")
    for size, n, reps, tm_reps in configs:
        gt, pred = make_pair(rng, size, n)
        check = _check(gt, pred, matching, tm_reps > 0)
        ok &= "NO" not in check
        t_ours = _times(lambda gt=gt, pred=pred: evaluate_pair(gt, pred), reps)
        t_sd = _times(lambda gt=gt, pred=pred: matching(gt, pred, thresh=0.5), reps)
        ratio = statistics.median(t_sd) / statistics.median(t_ours)
        worst = min(worst, ratio)
        print(f"{size}x{size}, {int(np.unique(gt).size - 1)} GT nuclei ({check})")
        print(f"  evaluate_pair (all metrics)      {_fmt(t_ours)}")
        print(f"  stardist.matching (PQ family)    {_fmt(t_sd)}   -> ours {ratio:5.1f}x faster")
        if tm_reps:
            t_tm = _times(lambda gt=gt, pred=pred: _torchmetrics_pq(gt, pred), tm_reps)
            print(
                f"  torchmetrics panoptic_quality    {_fmt(t_tm)}   -> ours "
                f"{statistics.median(t_tm) / statistics.median(t_ours):5.0f}x faster"
            )
    print(f"smallest ratio against stardist: {worst:.1f}x; peers agree: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
