"""From network maps to instances: HV marker-controlled watershed and whole-tile inference.

:func:`hv_watershed` is the post-processing both reference recipes (HoVerNeXt and CellViT as
run in NucFuseRank, ``recipes.md`` §2.4) apply to a nucleus-probability map and the two HV
maps. It is a clean re-implementation with numpy, scipy and scikit-image (no OpenCV):

* **Sobel, ksize k.** OpenCV's large-aperture Sobel derivative is separable: along the
  derivative axis the kernel is the binomial row of order ``k - 2`` convolved with
  ``[-1, 1]``; along the other axis it is the smoothing binomial row of order ``k - 1``
  (for ``k = 3``: ``[-1, 0, 1]`` ⊗ ``[1, 2, 1]``). Both are built here from binomial
  coefficients by repeated convolution, applied by correlation with the
  ``BORDER_REFLECT_101`` border (``scipy.ndimage`` mode ``"mirror"``), unnormalised, in
  float64.
* **Gaussian blur 3×3, σ = 0.** For odd sizes ≤ 7 and a non-positive σ, OpenCV does *not*
  use the ``σ = 0.3·((k−1)·0.5−1)+0.8`` rule of its documentation but a fixed binomial table;
  for 3×3 that is ``[0.25, 0.5, 0.25]`` per axis, which is what is applied here (same
  reflect-101 border).
* **Opening, 5×5 ellipse.** OpenCV's 5×5 elliptic structuring element (a 5×5 square minus
  its four corners' two outer pixels per side: rows ``00100/11111/11111/11111/00100``),
  with OpenCV's border convention (the outside never erodes).
* Connected components are 4-connected (``scipy.ndimage.label``'s default) and the watershed
  is ``skimage.segmentation.watershed`` with the binary map as mask.

The inference helpers implement ``recipes.md`` §2.5: reflect-pad at the bottom and right to a
multiple of 32, predict, crop back, post-process; :func:`sliding_window_predict` is an optional
tiled variant for large tiles or small GPUs.

Example:
    >>> import numpy as np
    >>> from nucfuse_datasets.transforms.targets import hv_maps
    >>> from nucfuse_datasets.transforms.postprocess import hv_watershed
    >>> inst = np.zeros((64, 64), np.int32)
    >>> inst[10:30, 10:30] = 1
    >>> inst[10:30, 30:50] = 2
    >>> pred = hv_watershed((inst > 0).astype(float), hv_maps(inst))
    >>> len(np.unique(pred)) - 1
    2
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from nucfuse_datasets._labelmap import check_label_map, relabel
from nucfuse_datasets.errors import ArgumentError
from nucfuse_datasets.transforms._watershed import MAGNIFICATION_PRESETS, hv_watershed, hv_watershed_params

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "MAGNIFICATION_PRESETS",
    "crop_to_shape",
    "hv_watershed",
    "hv_watershed_params",
    "instance_classes",
    "pad_to_multiple",
    "predict_instances",
    "sliding_window_predict",
]


# --------------------------------------------------------------------------- per-instance classes
def instance_classes(instances: np.ndarray, type_map: np.ndarray) -> np.ndarray:
    """The class of each predicted instance: the majority of the predicted type map over its pixels.

    HoVer-Net's rule (``vqdang/hover_net``, ``models/hovernet/post_proc.py``: ``process``; CellViT's
    post-processing keeps it): the most frequent type among the instance's pixels, where the background type 0
    counts only when it is the only one. Ties go to the smallest class id (HoVer-Net sorts the per-type pixel counts
    with a stable sort of the ascending type ids).

    Args:
        instances: ``H×W`` instance map (0 = background).
        type_map: ``H×W`` class id per pixel (e.g. the argmax of a type head, 0 = background).

    Returns:
        ``int64`` lookup ``classes`` with ``classes[id]`` = class of instance ``id`` for ids ``0..max``
        (``classes[0] = 0``; 0 also for ids absent from the map), the ``(instances, classes)`` form
        :func:`nucfuse_datasets.evaluate` takes.

    Raises:
        ArgumentError: maps that are not 2-D non-negative integer maps of the same shape.

    Example:
        >>> import numpy as np
        >>> inst = np.array([[1, 1, 1, 2], [1, 0, 3, 2]])
        >>> types = np.array([[2, 2, 1, 0], [0, 1, 0, 0]])
        >>> instance_classes(inst, types).tolist()  # 1: two 2s beat 1 and 0; 2: only background; 3: background
        [0, 2, 0, 0]
    """
    inst = check_label_map(instances, "instances", ArgumentError)
    types = check_label_map(type_map, "type_map", ArgumentError, shape=inst.shape)
    top = int(inst.max()) if inst.size else 0
    out = np.zeros(top + 1, np.int64)
    fg = inst > 0
    if not fg.any():
        return out
    dense = relabel(inst[fg])
    n_types = int(types.max()) + 1
    counts = np.bincount(
        dense.labels.astype(np.int64) * n_types + types[fg], minlength=(dense.n + 1) * n_types
    ).reshape(dense.n + 1, n_types)[1:]
    if n_types > 1:
        best = counts[:, 1:].argmax(axis=1) + 1  # argmax takes the first maximum: the smallest class id
        out[dense.ids.astype(np.int64)] = np.where(counts[:, 1:].max(axis=1) > 0, best, 0)
    return out


# --------------------------------------------------------------------------- whole-tile inference
def _is_tensor(x: Any) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return False
    return isinstance(x, torch.Tensor)


def _pad_tensor(x: torch.Tensor, pad_h: int, pad_w: int, mode: str, value: float) -> torch.Tensor:
    import torch.nn.functional as F

    if mode == "constant":
        return F.pad(x, (0, pad_w, 0, pad_h), mode="constant", value=value)
    squeeze = 0
    while x.ndim < 4:  # torch's reflect/replicate padding wants a batch and a channel axis
        x = x.unsqueeze(0)
        squeeze += 1
    torch_mode = {"reflect": "reflect", "edge": "replicate"}[mode]
    while pad_h > 0 or pad_w > 0:
        h, w = x.shape[-2:]
        step_h = min(pad_h, h - 1) if torch_mode == "reflect" else pad_h
        step_w = min(pad_w, w - 1) if torch_mode == "reflect" else pad_w
        if torch_mode == "reflect" and ((pad_h > 0 and step_h <= 0) or (pad_w > 0 and step_w <= 0)):
            torch_mode = "replicate"  # a 1-pixel side cannot be reflected
            continue
        x = F.pad(x, (0, step_w, 0, step_h), mode=torch_mode)
        pad_h -= step_h
        pad_w -= step_w
    for _ in range(squeeze):
        x = x.squeeze(0)
    return x


def pad_to_multiple(
    image: np.ndarray | torch.Tensor,
    multiple: int = 32,
    mode: str = "reflect",
    *,
    value: float = 0.0,
) -> tuple[np.ndarray | torch.Tensor, tuple[int, int]]:
    """Pad at the bottom and right so that height and width are multiples of ``multiple``.

    Numpy arrays are spatial-first (``H×W`` or ``H×W×C``, like ``Sample.image``); torch
    tensors are spatial-last (``…×H×W``, like a ``B×C×H×W`` batch).

    Args:
        image: the array or tensor to pad.
        multiple: target multiple (32 for both reference models).
        mode: ``"reflect"`` (mirror without repeating the edge pixel; what the recipes use),
            ``"edge"`` or ``"constant"``.
        value: fill value for ``"constant"``.

    Returns:
        ``(padded, (H, W))`` with the original spatial size, for :func:`crop_to_shape`.

    Raises:
        ArgumentError: ``multiple < 1``, an unknown mode or fewer than 2 dimensions.

    Example:
        >>> import numpy as np
        >>> padded, shape = pad_to_multiple(np.zeros((30, 50, 3), np.uint8), 32)
        >>> padded.shape, shape
        ((32, 64, 3), (30, 50))
    """
    if multiple < 1:
        raise ArgumentError(f"multiple must be >= 1, got {multiple}")
    if mode not in ("reflect", "edge", "constant"):
        raise ArgumentError(f"mode must be 'reflect', 'edge' or 'constant', got {mode!r}")
    if image.ndim < 2:
        raise ArgumentError(f"image must have at least 2 dimensions, got shape {tuple(image.shape)}")
    tensor = _is_tensor(image)
    h, w = (image.shape[-2], image.shape[-1]) if tensor else (image.shape[0], image.shape[1])
    pad_h = (-h) % multiple
    pad_w = (-w) % multiple
    if pad_h == 0 and pad_w == 0:
        return image, (int(h), int(w))
    if tensor:
        return _pad_tensor(image, pad_h, pad_w, mode, value), (int(h), int(w))  # type: ignore[arg-type]
    widths = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (image.ndim - 2)
    if mode == "constant":
        padded = np.pad(image, widths, mode="constant", constant_values=value)
    elif mode == "reflect" and (h > 1 or pad_h == 0) and (w > 1 or pad_w == 0):
        padded = np.pad(image, widths, mode="reflect")
    else:
        padded = np.pad(image, widths, mode="edge")
    return padded, (int(h), int(w))


def crop_to_shape(image: np.ndarray | torch.Tensor, shape: Sequence[int]) -> np.ndarray | torch.Tensor:
    """Undo :func:`pad_to_multiple`: keep the top-left ``shape = (H, W)`` pixels.

    Args:
        image: numpy array (spatial-first) or torch tensor (spatial-last).
        shape: the ``(H, W)`` returned by :func:`pad_to_multiple`.

    Returns:
        The cropped view.

    Example:
        >>> import numpy as np
        >>> padded, shape = pad_to_multiple(np.zeros((30, 50), np.float32), 32)
        >>> crop_to_shape(padded, shape).shape
        (30, 50)
    """
    h, w = int(shape[0]), int(shape[1])
    if _is_tensor(image):
        return image[..., :h, :w]
    return image[:h, :w]


def _starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def _blend_window(tile: int, blend: str) -> np.ndarray:
    if blend == "mean":
        return np.ones((tile, tile), np.float32)
    # "gaussian": centre pixels of a tile count more than its borders (σ = tile / 8).
    centre = (tile - 1) / 2.0
    ax = np.exp(-0.5 * ((np.arange(tile) - centre) / (tile / 8.0)) ** 2)
    win = np.outer(ax, ax)
    return np.maximum(win / win.max(), 1e-3).astype(np.float32)


def sliding_window_predict(
    fn: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    *,
    tile: int = 256,
    overlap: int = 64,
    batch_size: int = 4,
    blend: str = "mean",
    pad_mode: str = "reflect",
) -> torch.Tensor:
    """Run ``fn`` on overlapping tiles of a large image and blend the outputs.

    Tiles of ``tile × tile`` with a stride of ``tile - overlap``; the last row/column of
    tiles is shifted to end at the image border. Images smaller than a tile are padded at the
    bottom/right (``pad_mode``) first. Overlaps are averaged (``blend="mean"``) or weighted
    towards tile centres (``"gaussian"``).

    Args:
        fn: maps a ``B×C×tile×tile`` float tensor to a ``B×K×tile×tile`` tensor (already
            activated maps, e.g. ``[nucleus prob, h, v]``).
        image: ``C×H×W`` (or ``1×C×H×W``) normalised float tensor.
        tile: tile side (a multiple of the model's stride, 32 for both reference models).
        overlap: pixels shared by neighbouring tiles, ``0 <= overlap < tile``.
        batch_size: tiles per call of ``fn``.
        blend: ``"mean"`` or ``"gaussian"``.
        pad_mode: padding for images smaller than a tile (see :func:`pad_to_multiple`).

    Returns:
        ``K×H×W`` float32 tensor on the image's device.

    Raises:
        ArgumentError: bad tile geometry, blend mode or output shape.

    Example:
        >>> import torch
        >>> out = sliding_window_predict(lambda x: x[:, :1] * 2, torch.ones(3, 100, 70), tile=64,
        ...                              overlap=16)
        >>> out.shape, float(out.min()), float(out.max())
        (torch.Size([1, 100, 70]), 2.0, 2.0)
    """
    import torch

    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ArgumentError("sliding_window_predict takes a single image (C×H×W or 1×C×H×W)")
        image = image[0]
    if image.ndim != 3:
        raise ArgumentError(f"image must be C×H×W, got shape {tuple(image.shape)}")
    if tile < 1 or not 0 <= overlap < tile:
        raise ArgumentError(f"need tile >= 1 and 0 <= overlap < tile, got tile={tile}, overlap={overlap}")
    if blend not in ("mean", "gaussian"):
        raise ArgumentError(f"blend must be 'mean' or 'gaussian', got {blend!r}")
    h, w = image.shape[-2:]
    pad_h, pad_w = max(0, tile - h), max(0, tile - w)
    if pad_h or pad_w:
        image = _pad_tensor(image, pad_h, pad_w, pad_mode, 0.0)
    big_h, big_w = image.shape[-2:]
    stride = tile - overlap
    corners = [(y, x) for y in _starts(big_h, tile, stride) for x in _starts(big_w, tile, stride)]
    window = torch.from_numpy(_blend_window(tile, blend)).to(image.device)
    acc: torch.Tensor | None = None
    weight = torch.zeros((big_h, big_w), dtype=torch.float32, device=image.device)
    for i in range(0, len(corners), batch_size):
        chunk = corners[i : i + batch_size]
        batch = torch.stack([image[:, y : y + tile, x : x + tile] for y, x in chunk])
        out = fn(batch)
        if out.ndim != 4 or out.shape[0] != len(chunk) or tuple(out.shape[-2:]) != (tile, tile):
            raise ArgumentError(
                f"fn must return B×K×{tile}×{tile} for a B×C×{tile}×{tile} input, got {tuple(out.shape)}"
            )
        out = out.float()
        if acc is None:
            acc = torch.zeros((out.shape[1], big_h, big_w), dtype=torch.float32, device=image.device)
        for (y, x), o in zip(chunk, out, strict=True):
            acc[:, y : y + tile, x : x + tile] += o * window
            weight[y : y + tile, x : x + tile] += window
    if acc is None:
        raise ArgumentError(f"image of {h}×{w} px has no tile to predict")
    return (acc / weight)[:, :h, :w]


def predict_instances(
    model_fn: Callable[[torch.Tensor], torch.Tensor],
    image: np.ndarray,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    multiple: int = 32,
    tile: int | None = None,
    overlap: int = 64,
    device: str | torch.device | None = None,
    return_maps: bool = False,
    **postprocess: Any,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Whole-tile inference: normalise, reflect-pad, predict, crop back, :func:`hv_watershed`.

    ``recipes.md`` §2.5: the image is processed whole (``tile=None``), reflect-padded at the
    bottom and right to a multiple of ``multiple`` and the maps are cropped back before the
    post-processing; no test-time augmentation. With ``tile`` set, the maps come from
    :func:`sliding_window_predict` instead (for memory; not what the paper did).

    Args:
        model_fn: maps a normalised ``B×3×h×w`` float tensor to a ``B×C×h×w`` tensor of
            ``[nucleus probability, h, v, ...]``; the model must already be in ``eval()`` mode.
            ``examples/*/model.py`` provide such adapters for the two reference models. Channels after
            the first three (e.g. type probabilities of a class-aware model) are passed through to the
            ``return_maps`` output, cropped or blended like the others.
        image: ``H×W×3`` ``uint8`` RGB tile (``Sample.image``).
        mean: per-channel mean on the [0, 1] scale (ImageNet for HoVerNeXt, 0.5 for CellViT).
        std: per-channel standard deviation on the [0, 1] scale.
        multiple: padding multiple for whole-tile inference.
        tile: sliding-window tile side, or ``None`` for whole-tile inference.
        overlap: sliding-window overlap.
        device: where to run ``model_fn`` (default: CPU).
        return_maps: also return the ``C×H×W`` float32 maps.
        **postprocess: keyword arguments for :func:`hv_watershed` (e.g.
            ``**hv_watershed_params(40)``).

    Returns:
        The ``H×W`` ``int32`` instance map, or ``(instances, maps)`` with ``return_maps``.

    Raises:
        ArgumentError: the image is not ``H×W×3`` or ``model_fn`` returns a wrong shape.

    Example:
        >>> import numpy as np, torch
        >>> from nucfuse_datasets.transforms.targets import hv_maps
        >>> inst = np.zeros((40, 40), np.int32)
        >>> inst[5:20, 5:20] = 1
        >>> maps = torch.from_numpy(np.concatenate([(inst > 0)[None], hv_maps(inst)]).astype(np.float32))
        >>> oracle = lambda x: maps[None, :, : x.shape[2], : x.shape[3]].expand(x.shape[0], -1, -1, -1)
        >>> img = np.zeros((40, 40, 3), np.uint8)
        >>> pred = predict_instances(oracle, img, mean=(0.5,) * 3, std=(0.5,) * 3, multiple=8)
        >>> int(pred.max()), pred.shape
        (1, (40, 40))
    """
    import torch

    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ArgumentError(f"image must be H×W×3, got shape {arr.shape}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float().div_(255.0)
    m = torch.as_tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32).view(3, 1, 1)
    x = ((x - m) / s).to(dev)
    h, w = arr.shape[:2]
    with torch.inference_mode():
        if tile is None:
            padded, shape = pad_to_multiple(x[None], multiple, "reflect")
            out = model_fn(padded)  # type: ignore[arg-type]
            if out.ndim != 4 or out.shape[1] < 3 or tuple(out.shape[-2:]) != tuple(padded.shape[-2:]):
                raise ArgumentError(f"model_fn must return 1×C×h×w [prob, h, v, ...] maps, got {tuple(out.shape)}")
            maps = crop_to_shape(out, shape)[0]
        else:
            maps = sliding_window_predict(model_fn, x, tile=tile, overlap=overlap)
            if maps.shape[0] < 3:
                raise ArgumentError(f"model_fn must return at least 3 channels [prob, h, v], got {maps.shape[0]}")
    maps_np = maps.float().cpu().numpy()
    if maps_np.shape[1:] != (h, w):
        raise ArgumentError(f"model_fn maps have shape {maps_np.shape}, expected (C, {h}, {w})")
    inst = hv_watershed(maps_np[0], maps_np[1:3], **postprocess)
    return (inst, maps_np) if return_maps else inst
