"""Pretrained encoder weights of the reference recipes, fetched the way the paper's runs got them.

NucFuseRank fine-tuned pretrained encoders (paper §3.5: "we adhered to the original implementations"):

* **HoVerNeXt**: timm's ``convnextv2_tiny.fcmae_ft_in22k_in1k`` ImageNet weights, which timm downloads from the
  Hugging Face Hub at run time (:data:`CONVNEXTV2_TINY`, :func:`convnextv2_weights`);
* **CellViT-256**: the HIPT ``vit256_small_dino.pth`` checkpoint (Mahmood Lab; DINO on 256×256 TCGA patches), kept
  in ``mahmoodlab/HIPT`` on GitHub with Git LFS (:data:`HIPT_VIT256`, :func:`hipt_vit256_weights`).

Both are looked up first in the weights folder (:func:`weights_dir`: ``<data root>/weights``, i.e.
``$NUCFUSE_DATA_DIR/weights`` or the user cache), where a file placed by hand is used as is. The HIPT file is
otherwise downloaded through the library's one network seam (:func:`nucfuse_datasets.io.download.fetch`: temporary
file, atomic move, HTML-page detection). No hash is published for it, so its sha256 is recorded on first use,
**only after the file has loaded as a state dict of tensors**; a file that does not load is deleted and reported.
The ConvNeXt file comes through timm's own hub mechanism (the model's ``hf_hub_id``, downloaded with
``huggingface_hub`` into its cache). With ``NUCFUSE_OFFLINE=1`` or an unreachable host, both raise one error that
names the file, where to get it and the exact local path to put it.

Tests inject transports (:func:`nucfuse_datasets.io.download.use_downloader` for HIPT, :func:`use_hub_downloader`
for the hub) and never touch the network.

Example:
    >>> import pathlib, torch
    >>> folder = getfixture("tmp_path")
    >>> torch.save({"teacher": {"backbone.cls_token": torch.zeros(1, 1, 384)}}, folder / "vit256_small_dino.pth")
    >>> hipt_vit256_weights(folder).name  # a file placed by hand is checked and used, nothing is downloaded
    'vit256_small_dino.pth'
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nucfuse_datasets.errors import (
    DependencyNotFoundError,
    DownloadError,
    InvalidSourceError,
    OfflineError,
)
from nucfuse_datasets.io.config import OFFLINE_ENV, PathLike, is_offline, resolve_root
from nucfuse_datasets.io.download import Resource, fetch, record_first_use, verify_file
from nucfuse_datasets.io.files import sha256_file

__all__ = [
    "CONVNEXTV2_TINY",
    "HIPT_VIT256",
    "HubWeights",
    "convnextv2_weights",
    "hipt_vit256_weights",
    "load_weights_file",
    "use_hub_downloader",
    "weights_dir",
]

#: HIPT ViT-256 (DINO ViT-S/16 on 256² TCGA patches): ``mahmoodlab/HIPT``, ``HIPT_4K/Checkpoints``, Git LFS.
#: The URL is pinned to commit f5346cc7, which holds ``HIPT_4K/Checkpoints/vit256_small_dino.pth`` (checked in the
#: repository's file listing); GitHub's ``raw`` endpoint redirects LFS files to their media host.
HIPT_VIT256 = Resource(
    key="hipt_vit256_small_dino",
    filename="vit256_small_dino.pth",
    urls=(
        "https://github.com/mahmoodlab/HIPT/raw/f5346cc7cb0f9f6860c95f3369c31d1d2c6c666f/HIPT_4K/Checkpoints/vit256_small_dino.pth",
    ),
    kind="file",
    page="https://github.com/mahmoodlab/HIPT/tree/f5346cc7cb0f9f6860c95f3369c31d1d2c6c666f/HIPT_4K/Checkpoints",
    hash_source="none published: the sha256 is recorded on first use, after the file loads as a state dict",
    note="Mahmood Lab terms; the CellViT authors also share it in their Google Drive folder",
)


@dataclass(frozen=True)
class HubWeights:
    """Weights that timm downloads from the Hugging Face Hub.

    Attributes:
        model: timm model name with its pretrained tag.
        filename: the file name used in the weights folder for a copy placed by hand.
        hub_filename: the file in the hub repository.
    """

    model: str
    filename: str
    hub_filename: str = "model.safetensors"

    @property
    def repo_id(self) -> str:
        """The hub repository timm uses for this model (``timm/<model>``)."""
        return f"timm/{self.model}"

    @property
    def page(self) -> str:
        """Web page of the hub repository."""
        return f"https://huggingface.co/{self.repo_id}"


#: HoVerNeXt's encoder weights: FCMAE pretraining, ImageNet-22k then ImageNet-1k fine-tuning.
CONVNEXTV2_TINY = HubWeights("convnextv2_tiny.fcmae_ft_in22k_in1k", "convnextv2_tiny.fcmae_ft_in22k_in1k.safetensors")

#: A hub transport: ``(repo_id, filename) -> local path of the downloaded file``.
HubDownloader = Callable[[str, str], str]
_hub_injected: HubDownloader | None = None


@contextlib.contextmanager
def use_hub_downloader(fn: HubDownloader) -> Iterator[None]:
    """Replace the Hugging Face Hub download (tests serve generated files through it)."""
    global _hub_injected
    previous, _hub_injected = _hub_injected, fn
    try:
        yield
    finally:
        _hub_injected = previous


def weights_dir(root: PathLike | None = None) -> Path:
    """The folder for pretrained weights: ``<data root>/weights`` (``$NUCFUSE_DATA_DIR`` or the user cache)."""
    return resolve_root(root) / "weights"


def load_weights_file(path: PathLike) -> dict[str, Any]:
    """Load a weights file (``.safetensors``, or a torch checkpoint) and check that it holds tensors.

    Torch checkpoints are read with ``weights_only=True`` (DINO checkpoints carry an ``argparse.Namespace`` of their
    training arguments, which is allowed); the ``teacher``/``model``/``state_dict`` entry is returned when present.

    Raises:
        InvalidSourceError: the file does not load, or holds no tensors; the message names the file.
    """
    import torch

    p = Path(path)
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(p))
        else:
            with torch.serialization.safe_globals([argparse.Namespace]):
                state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch, pickle and safetensors errors of a damaged or foreign file
        raise InvalidSourceError(f"{p} is not a readable weights file ({type(exc).__name__}: {exc})") from None
    if isinstance(state, Mapping):
        for key in ("teacher", "model", "state_dict"):
            if isinstance(state.get(key), Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise InvalidSourceError(f"{p} holds no state dict of tensors")
    return dict(state)


def _hint(what: str, where: str, dest: Path) -> str:
    return (
        f"Download {what} from {where} and put it at {dest} (or pass its path with --pretrained PATH / "
        "model.pretrained), or train without pretrained weights with --no-pretrained"
    )


def hipt_vit256_weights(folder: PathLike | None = None, *, progress: bool = True) -> Path:
    """The local path of HIPT's ``vit256_small_dino.pth``, downloading it when it is not in ``folder``.

    Args:
        folder: weights folder (default :func:`weights_dir`).
        progress: download progress bar.

    Raises:
        OfflineError: not present and ``NUCFUSE_OFFLINE=1``; the message names the URL and the exact path.
        DownloadError: not present and the host is unreachable (same message).
        ChecksumError: the file differs from the sha256 recorded on its first use.
        InvalidSourceError: the file does not load as a state dict (a downloaded one is deleted).

    Example:
        >>> import torch
        >>> folder = getfixture("tmp_path")
        >>> torch.save({"pos_embed": torch.zeros(1, 197, 384)}, folder / "vit256_small_dino.pth")
        >>> hipt_vit256_weights(folder) == folder / "vit256_small_dino.pth"
        True
    """
    res = HIPT_VIT256
    base = Path(folder) if folder is not None else weights_dir()
    dest = base / res.filename
    hint = _hint(f"{res.filename!r} (HIPT ViT-256, about 0.7 GB)", res.urls[0], dest)
    if dest.is_file():
        verify_file(res, dest, record=False)  # a recorded hash must match; nothing recorded before it loads
        load_weights_file(dest)
        record_first_use(res, dest, sha256_file(dest), "local file")
        return dest
    if is_offline():
        raise OfflineError(f"{OFFLINE_ENV}=1 is set, so {res.filename!r} was not downloaded. {hint}.")
    try:
        path = fetch(res, base, progress=progress, record=False)
    except OfflineError:
        raise
    except DownloadError as exc:
        raise DownloadError(f"could not download {res.filename!r} ({exc}). {hint}.") from None
    try:
        load_weights_file(path)
    except InvalidSourceError as exc:
        path.unlink(missing_ok=True)
        raise InvalidSourceError(f"the download from {res.urls[0]} was deleted: {exc}. {hint}.") from None
    record_first_use(res, path, sha256_file(path), res.urls[0])
    return path


def _hub_download(repo_id: str, filename: str) -> str:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        raise DependencyNotFoundError("downloading timm weights needs huggingface_hub (a timm dependency)") from None
    return str(hf_hub_download(repo_id=repo_id, filename=filename))


def convnextv2_weights(
    folder: PathLike | None = None, *, weights: HubWeights = CONVNEXTV2_TINY, download: bool = True
) -> Path:
    """The local path of timm's ConvNeXt-V2 weights: the weights folder, else timm's hub download.

    The hub repository is the one timm itself downloads from (``timm/<model>``); the file lands in the Hugging Face
    cache and is passed to timm with ``pretrained_cfg_overlay={"file": path}``.

    Raises:
        OfflineError: not in the folder and ``NUCFUSE_OFFLINE=1`` (or ``download=False``).
        DownloadError: not in the folder and the hub is unreachable.
        InvalidSourceError: the file does not load as a state dict.

    Example:
        >>> import torch
        >>> from safetensors.torch import save_file
        >>> folder = getfixture("tmp_path")
        >>> save_file({"stem.0.weight": torch.zeros(40, 3, 4, 4)}, folder / CONVNEXTV2_TINY.filename)
        >>> convnextv2_weights(folder).name
        'convnextv2_tiny.fcmae_ft_in22k_in1k.safetensors'
    """
    base = Path(folder) if folder is not None else weights_dir()
    dest = base / weights.filename
    hint = _hint(f"{weights.hub_filename!r} of {weights.model}", weights.page, dest)
    if dest.is_file():
        load_weights_file(dest)
        return dest
    if is_offline() or not download:
        why = f"{OFFLINE_ENV}=1 is set" if is_offline() else "downloading is off"
        raise OfflineError(f"{why}, so the {weights.model} weights were not downloaded from the hub. {hint}.")
    fn = _hub_injected or _hub_download
    try:
        path = Path(fn(weights.repo_id, weights.hub_filename))
    except (DependencyNotFoundError, OfflineError):
        raise
    except Exception as exc:  # huggingface_hub / requests / OS errors: one clear message
        raise DownloadError(
            f"could not download the {weights.model} weights from {weights.page} ({type(exc).__name__}: {exc}). {hint}."
        ) from None
    load_weights_file(path)
    return path
