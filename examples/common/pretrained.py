"""Which pretrained encoder weights a run uses: the ``model.pretrained`` config value.

* ``"auto"`` (the default): the weights the paper fine-tuned, from the weights folder
  (``<data root>/weights``) or downloaded: timm's ``convnextv2_tiny.fcmae_ft_in22k_in1k`` for HoVerNeXt
  (:func:`nucfuse_datasets.weights.convnextv2_weights`) and HIPT's ``vit256_small_dino.pth`` for CellViT
  (:func:`nucfuse_datasets.weights.hipt_vit256_weights`). Only defined for the paper's encoder.
* a path: that local file (``--pretrained PATH``).
* ``""`` / ``"none"``: random initialisation, with the model's warning (``--no-pretrained``; the smoke and CPU
  configurations).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nucfuse_datasets.errors import ArgumentError
from nucfuse_datasets.weights import weights_dir

if TYPE_CHECKING:  # pragma: no cover
    from examples.common.spec import RecipeSpec

__all__ = ["AUTO", "is_random_init", "resolve_pretrained"]

#: The ``model.pretrained`` value that selects the paper's weights.
AUTO = "auto"
_NONE = ("", "none", "false", "random")


def is_random_init(value: Any) -> bool:
    """Whether a ``model.pretrained`` value asks for random initialisation."""
    return value is None or value is False or str(value).strip().lower() in _NONE


def resolve_pretrained(spec: RecipeSpec, model_cfg: Mapping[str, Any], root: str | Path | None = None) -> str | None:
    """The weights file for ``model_cfg["pretrained"]``: a path, or ``None`` for random initialisation.

    Args:
        spec: the recipe (knows its paper encoder and how to fetch its weights).
        model_cfg: the ``model`` section.
        root: data root; the weights folder is ``<root>/weights`` (default root: ``$NUCFUSE_DATA_DIR`` or the
            user cache).

    Raises:
        ArgumentError: ``"auto"`` with an encoder other than the paper's (no published weights to pick).
        OfflineError / DownloadError / InvalidSourceError: from :mod:`nucfuse_datasets.weights`.

    Example:
        >>> from examples.hovernext.spec import SPEC
        >>> resolve_pretrained(SPEC, {"pretrained": ""}) is None
        True
    """
    value = model_cfg.get("pretrained", AUTO)
    if is_random_init(value):
        return None
    text = str(value).strip()
    if text.lower() != AUTO:
        return text
    paper = spec.default_model_config().get("encoder_name")
    encoder = model_cfg.get("encoder_name", paper)
    if encoder != paper:
        raise ArgumentError(
            f"model.pretrained = 'auto' selects the paper's {paper} weights, but model.encoder_name is {encoder!r}; "
            "pass a weights file for that encoder (--pretrained PATH) or train from scratch (--no-pretrained)"
        )
    return str(spec.fetch_pretrained(weights_dir(root or None)))
