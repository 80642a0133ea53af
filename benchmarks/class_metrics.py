"""Benchmark: class-aware scores (``class_scores``) against the official PanNuke, CoNIC and HoVer-Net codes.

The official code is not part of this repository (PanNuke-metrics and CoNIC publish no licence). Clone the three
repositories into one folder and pass it with ``--official``::

    mkdir -p /tmp/official && cd /tmp/official
    git clone https://github.com/TissueImageAnalytics/PanNuke-metrics && git -C PanNuke-metrics checkout c00014d
    git clone https://github.com/TissueImageAnalytics/CoNIC && git -C CoNIC checkout c1c4964
    git clone https://github.com/vqdang/hover_net && git -C hover_net checkout 67e2ce5
    cd - && python benchmarks/class_metrics.py --official /tmp/official [--quick]

At run time the script imports, from those folders, the functions the official scripts call: PanNuke-metrics
``utils.py`` (``get_fast_pq``, ``remap_label``, ``binarize``), CoNIC ``metrics/stats_utils.py`` (``get_pq``,
``get_multi_pq_info``) and HoVer-Net ``metrics/stats_utils.py`` (``pair_coordinates``). The loops that ``run.py``,
``compute_stats.py`` and ``run_nuclei_type_stat`` run around them are written here from their definitions. Modules
those files import but the benchmark never calls (scikit-learn for CoNIC's R², OpenCV and matplotlib for HoVer-Net)
are replaced by empty stand-ins when they are not installed.

Each path scores the same cases in one process: the 40 cases of ``../shared/metric_oracle/class_aware`` (when
present), PanNuke-like 256x256 tiles (20-40 nuclei, 5 classes) and 1000x1000 tiles (about 500 nuclei). Inputs are
converted to each official format (6-channel PanNuke masks, CoNIC's instance + class channels, HoVer-Net centroids
as its ``.mat`` files hold them) before timing; ``class_scores`` starts from the ``(instances, classes)`` pairs, so
its time includes the centroid extraction that HoVer-Net's files have done beforehand. The script checks that both
give the same values (exit status 1 otherwise) and prints min/median/max times over the repeats and the ratio of
the medians. Timings depend on the machine; this is not a test.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
import types
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from nucfuse_datasets.metrics import class_scores, image_class_stats, reduce_class_stats

ORACLE = Path(__file__).resolve().parents[1].parent / "shared" / "metric_oracle" / "class_aware"
#: The tissue names PanNuke's run.py iterates over (a fact of that script: images of other names are dropped).
PANNUKE_TISSUES = [
    *("Adrenal_gland", "Bile-duct", "Bladder", "Breast", "Cervix", "Colon", "Esophagus", "HeadNeck", "Kidney"),
    *("Liver", "Lung", "Ovarian", "Pancreatic", "Prostate", "Skin", "Stomach", "Testis", "Thyroid", "Uterus"),
]
N_CLASSES = 5

Pair = tuple[np.ndarray, np.ndarray]


# --- the official functions, imported from the checkouts ---------------------------------------------------------


def _load(name: str, path: Path, root: Path) -> types.ModuleType:
    if not path.is_file():
        raise SystemExit(f"{path} not found: clone the official repositories into --official (see the docstring).")
    sys.path.insert(0, str(root))
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(root))


def _stand_in(*names: str) -> None:
    """Empty modules for imports the official files make but the functions used here never call."""
    for name in names:
        top = name.split(".")[0]
        if importlib.util.find_spec(top) is None:
            for i in range(1, name.count(".") + 2):
                sys.modules.setdefault(".".join(name.split(".")[:i]), types.ModuleType(name))
            if name == "sklearn.metrics":
                sys.modules[name].r2_score = None  # type: ignore[attr-defined]


def load_official(root: Path) -> dict[str, types.ModuleType]:
    _stand_in("sklearn.metrics", "cv2", "matplotlib.pyplot")
    return {
        "pannuke": _load("official_pannuke_utils", root / "PanNuke-metrics" / "utils.py", root / "PanNuke-metrics"),
        "conic": _load("official_conic_stats", root / "CoNIC" / "metrics" / "stats_utils.py", root / "CoNIC"),
        "hovernet": _load(
            "official_hovernet_stats", root / "hover_net" / "metrics" / "stats_utils.py", root / "hover_net"
        ),
    }


# --- inputs in each official format (untimed) ----------------------------------------------------------------------


def to_pannuke(inst: np.ndarray, cls: np.ndarray) -> np.ndarray:
    """H x W x 6 float mask: channel k-1 holds the ids of the class-k nuclei, channel 5 the background."""
    out = np.zeros((*inst.shape, N_CLASSES + 1), np.float64)
    type_map = cls[inst]
    for k in range(N_CLASSES):
        out[..., k] = np.where(type_map == k + 1, inst, 0)
    out[..., N_CLASSES] = inst == 0
    return out


def to_conic(inst: np.ndarray, cls: np.ndarray) -> np.ndarray:
    return np.stack([inst, cls[inst]], axis=-1).astype(np.int32)


def to_hovernet(inst: np.ndarray, cls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What HoVer-Net's .mat files hold: inst_centroid (N x 2, x/y) and inst_type (N x 1), ascending id."""
    ids = np.unique(inst)
    ids = ids[ids > 0]
    if ids.size == 0:
        return np.zeros((0, 2)), np.zeros((0, 1), np.int32)
    com = np.array(ndimage.center_of_mass(np.ones(inst.shape), inst, ids), np.float64).reshape(-1, 2)
    return com[:, ::-1].copy(), cls[ids][:, None].astype(np.int32)


# --- the official scripts' loops, written from their definitions ----------------------------------------------


def official_pannuke(m: types.ModuleType, true: list[np.ndarray], pred: list[np.ndarray], tissues: list[str]) -> dict:
    mpq_all, bpq_all = [], []
    for t, p in zip(true, pred, strict=True):
        true_bin, pred_bin = m.binarize(t[..., :N_CLASSES]), m.binarize(p[..., :N_CLASSES])
        pq_bin = np.nan if len(np.unique(true_bin)) == 1 else m.get_fast_pq(true_bin, pred_bin)[0][2]
        row = []
        for k in range(N_CLASSES):
            tk = m.remap_label(t[..., k].astype("int32"))
            pk = m.remap_label(p[..., k].astype("int32"))
            row.append(np.nan if len(np.unique(tk)) == 1 else m.get_fast_pq(tk, pk)[0][2])
        mpq_all.append(row)
        bpq_all.append([pq_bin])
    mpq_img = [np.nanmean(r) for r in mpq_all]
    bpq_img = [np.nanmean(r) for r in bpq_all]
    per_class = [np.nanmean([r[k] for r in mpq_all]) for k in range(N_CLASSES)]
    t_m, t_b = [], []
    for name in PANNUKE_TISSUES:
        idx = [i for i, x in enumerate(tissues) if x == name]
        t_m.append(np.nanmean([mpq_img[i] for i in idx]))
        t_b.append(np.nanmean([bpq_img[i] for i in idx]))
    return {"mpq": np.nanmean(t_m), "bpq": np.nanmean(t_b), "per_class": per_class}


def official_conic(m: types.ModuleType, true: list[np.ndarray], pred: list[np.ndarray]) -> dict:
    pq_list, info_list = [], []
    for t, p in zip(true, pred, strict=True):
        pq_list.append(m.get_pq(t[..., 0], p[..., 0])[0][2])
        info_list.append([list(c) for c in m.get_multi_pq_info(t, p, nr_classes=N_CLASSES)])
    total = np.sum(np.array(info_list, dtype="float"), axis=0)
    per_class = []
    for tp, fp, fn, sum_iou in total:
        dq = tp / ((tp + 0.5 * fp + 0.5 * fn) + 1.0e-6)
        per_class.append(dq * (sum_iou / (tp + 1.0e-6)))
    return {"mpq+": np.mean(np.array(per_class)), "pq": np.mean(np.array(pq_list)), "per_class": per_class}


def official_hovernet(m: types.ModuleType, true: list[tuple], pred: list[tuple]) -> dict:
    paired_all, un_t_all, un_p_all, t_types, p_types = [], [], [], [], []
    t_off = p_off = 0
    for (tc, tt), (pc, pt) in zip(true, pred, strict=True):
        tc, pc = tc.astype("float32"), pc.astype("float32")
        tt, pt = tt.astype("int32"), pt.astype("int32")
        tt, tc = (tt[:, 0], tc) if tc.shape[0] else (np.array([0]), np.array([[0, 0]]))
        pt, pc = (pt[:, 0], pc) if pc.shape[0] else (np.array([0]), np.array([[0, 0]]))
        paired, un_t, un_p = m.pair_coordinates(tc, pc, 12)
        if paired.shape[0]:
            paired_all.append(paired + np.array([t_off, p_off]))
        un_t_all.append(un_t + t_off)
        un_p_all.append(un_p + p_off)
        t_types.append(tt)
        p_types.append(pt)
        t_off, p_off = t_off + tt.shape[0], p_off + pt.shape[0]
    pairs = np.concatenate(paired_all)
    tt_all, pt_all = np.concatenate(t_types), np.concatenate(p_types)
    a, b = tt_all[pairs[:, 0]], pt_all[pairs[:, 1]]
    ut, up = tt_all[np.concatenate(un_t_all)], pt_all[np.concatenate(un_p_all)]
    f1 = []
    for k in range(1, N_CLASSES + 1):
        sel = (a == k) | (b == k)
        x, y = a[sel], b[sel]
        tp, tn = ((x == k) & (y == k)).sum(), ((x != k) & (y != k)).sum()
        fp, fn = ((x != k) & (y == k)).sum(), ((x == k) & (y != k)).sum()
        f1.append(2 * (tp + tn) / (2 * (tp + tn) + 2 * fp + 2 * fn + (up == k).sum() + (ut == k).sum()))
    right = (a == b).sum()
    return {
        "f1_d": 2 * a.shape[0] / (2 * a.shape[0] + up.shape[0] + ut.shape[0]),
        "acc_type": right / (right + (a != b).sum()),
        "per_class": f1,
    }


# --- cases ----------------------------------------------------------------------------------------------------------


def _paint(canvas: np.ndarray, cy: float, cx: float, ry: float, rx: float, theta: float, value: int) -> None:
    h, w = canvas.shape
    r = int(np.ceil(max(ry, rx))) + 1
    y0, y1, x0, x1 = max(int(cy) - r, 0), min(int(cy) + r + 1, h), max(int(cx) - r, 0), min(int(cx) + r + 1, w)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    c, s = np.cos(theta), np.sin(theta)
    inside = ((c * (yy - cy) + s * (xx - cx)) / ry) ** 2 + ((-s * (yy - cy) + c * (xx - cx)) / rx) ** 2 <= 1.0
    canvas[y0:y1, x0:x1][inside] = value


def make_tile(rng: np.random.Generator, size: int, n: int) -> tuple[Pair, Pair]:
    """A GT tile with ``n`` typed nuclei and a plausible typed prediction (missed, eroded, shifted, mis-typed, FP)."""
    gt, pred = np.zeros((size, size), np.int32), np.zeros((size, size), np.int32)
    gt_cls, pred_cls = np.zeros(n + 1, np.int32), np.zeros(n + n // 10 + 2, np.int32)
    weights = rng.dirichlet(np.ones(N_CLASSES))  # class mix of the tile
    nxt = 1
    for i in range(1, n + 1):
        cy, cx = rng.uniform(0, size, 2)
        ry, rx = rng.uniform(4.0, 10.0, 2)
        theta = rng.uniform(0, np.pi)
        _paint(gt, cy, cx, ry, rx, theta, i)
        gt_cls[i] = rng.choice(N_CLASSES, p=weights) + 1
        u = rng.uniform()
        if u < 0.06:
            continue  # missed
        scale = 0.6 if u < 0.12 else rng.uniform(0.85, 1.15)  # eroded below IoU 0.5, or a good fit
        jy, jx = rng.normal(0, 1.2, 2)
        _paint(pred, cy + jy, cx + jx, ry * scale, rx * scale, theta, nxt)
        pred_cls[nxt] = gt_cls[i] if rng.uniform() < 0.8 else rng.integers(1, N_CLASSES + 1)
        nxt += 1
    for _ in range(n // 10 + 1):  # false positives
        cy, cx = rng.uniform(0, size, 2)
        _paint(pred, cy, cx, rng.uniform(3, 8), rng.uniform(3, 8), rng.uniform(0, np.pi), nxt)
        pred_cls[nxt] = rng.integers(1, N_CLASSES + 1)
        nxt += 1
    return (gt, gt_cls), (pred, pred_cls[: nxt + 1])


def case_sets(quick: bool, seed: int) -> list[tuple[str, list[Pair], list[Pair], list[str]]]:
    rng = np.random.default_rng(seed)
    sets = []
    if (ORACLE / "cases.npz").is_file():
        exp = json.loads((ORACLE / "expected.json").read_text())
        with np.load(ORACLE / "cases.npz") as z:
            n = exp["n_images"]
            gt = [(z[f"gt_{i:03d}_instances"], z[f"gt_{i:03d}_classes"]) for i in range(n)]
            pred = [(z[f"pred_{i:03d}_instances"], z[f"pred_{i:03d}_classes"]) for i in range(n)]
        sets.append((f"oracle {n} x 128x128", gt, pred, exp["tissues"]))
    for size, count, lo, hi in ((256, 16 if quick else 64, 20, 40), (1000, 1 if quick else 3, 450, 550)):
        tiles = [make_tile(rng, size, int(rng.integers(lo, hi + 1))) for _ in range(count)]
        names = [PANNUKE_TISSUES[i % 4 * 3] for i in range(count)]
        sets.append(
            (f"{count} x {size}x{size} ({lo}-{hi} nuclei)", [t[0] for t in tiles], [t[1] for t in tiles], names)
        )
    return sets


# --- timing and comparison ------------------------------------------------------------------------------------


def _times(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def _diff(ours: dict, theirs: dict, keys: tuple[str, ...], per_class_key: str) -> float:
    worst = max(abs(float(ours[k]) - float(theirs[k])) for k in keys)
    for k in range(1, N_CLASSES + 1):
        worst = max(worst, abs(float(ours["per_class"][k][per_class_key]) - float(theirs["per_class"][k - 1])))
    return worst


def _fmt(times: list[float]) -> str:
    return f"{min(times):8.4f} {statistics.median(times):8.4f} {max(times):8.4f}"


def run_set(
    official: dict[str, types.ModuleType],
    name: str,
    gt: list[Pair],
    pred: list[Pair],
    tissues: list[str],
    reps: int,
    rep_ours: int,
) -> float:
    """Time and compare the three protocols on one set of cases; return the largest difference."""
    pn_t, pn_p = [to_pannuke(*g) for g in gt], [to_pannuke(*p) for p in pred]
    cn_t, cn_p = [to_conic(*g) for g in gt], [to_conic(*p) for p in pred]
    hv_t, hv_p = [to_hovernet(*g) for g in gt], [to_hovernet(*p) for p in pred]

    def hovernet_from_maps() -> dict:
        return official_hovernet(official["hovernet"], [to_hovernet(*g) for g in gt], [to_hovernet(*p) for p in pred])

    runs: list[tuple[str, Callable[[], Any], str, tuple[str, ...], str]] = [
        (
            "pannuke",
            partial(official_pannuke, official["pannuke"], pn_t, pn_p, tissues),
            "pannuke",
            ("mpq", "bpq"),
            "pq",
        ),
        ("conic", partial(official_conic, official["conic"], cn_t, cn_p), "conic", ("mpq+", "pq"), "pq+"),
        (
            "hovernet",
            partial(official_hovernet, official["hovernet"], hv_t, hv_p),
            "hovernet",
            ("f1_d", "acc_type"),
            "f1",
        ),
        ("hovernet*", hovernet_from_maps, "hovernet", ("f1_d", "acc_type"), "f1"),
    ]
    worst = 0.0
    for label, theirs_fn, protocol, keys, pc_key in runs:
        extra = {"tissues": tissues} if protocol == "pannuke" else {}
        t_theirs, theirs = _times(theirs_fn, reps)
        t_ours, ours = _times(partial(class_scores, gt, pred, protocol, n_classes=N_CLASSES, **extra), rep_ours)
        diff = _diff(ours, theirs, keys, pc_key)
        worst = max(worst, diff)
        ratio = statistics.median(t_theirs) / statistics.median(t_ours)
        print(f"{name:34s} {label:9s} {_fmt(t_theirs):>26s} {_fmt(t_ours):>26s} {ratio:6.1f}x {diff:.1e}")

    def all_three() -> None:
        stats = [image_class_stats(*g, *p, n_classes=N_CLASSES) for g, p in zip(gt, pred, strict=True)]
        for protocol in ("pannuke", "conic", "hovernet"):
            reduce_class_stats(stats, protocol, tissues=tissues if protocol == "pannuke" else None)

    t_all, _ = _times(all_three, rep_ours)
    print(f"{name:34s} {'all 3':9s} {'':>26s} {_fmt(t_all):>26s}   (one image_class_stats pass, 3 reductions)")
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="folder with PanNuke-metrics, CoNIC, hover_net")
    parser.add_argument("--quick", action="store_true", help="fewer tiles and repeats")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", RuntimeWarning)  # the official nanmean of all-NaN slices
    official = load_official(args.official)
    rep_ours, rep_official = (3, 1) if args.quick else (5, 3)
    print(f"numpy {np.__version__}; seconds per whole set over repeats (ours {rep_ours}, official {rep_official})")
    print(
        "hovernet: the official pairing from centroids as its .mat files hold them; hovernet*: the same plus the "
        "centroid extraction from the maps (scipy.ndimage.center_of_mass). Ours always starts from the maps."
    )
    print(f"{'set':34s} {'protocol':9s} {'official min/median/max':>26s} {'ours min/median/max':>26s} ratio  max|diff|")
    worst = 0.0
    for name, gt, pred, tissues in case_sets(args.quick, args.seed):
        reps = 1 if "1000" in name else rep_official
        worst = max(worst, run_set(official, name, gt, pred, tissues, reps, rep_ours))
    print(f"largest difference from the official values: {worst:.2e}")
    return 0 if worst <= 1e-6 else 1


if __name__ == "__main__":
    raise SystemExit(main())
