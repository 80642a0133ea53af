"""CellViT-256 as run in NucFuseRank (``recipes.md`` §2.3, §4): a clean re-implementation.

* Encoder: DINO-style ViT-S/16 from timm (``vit_small_patch16_224``, ``num_classes=0``,
  ``dynamic_img_size=True`` so any side that is a multiple of 16 works; attention dropout
  0.1, drop-path 0.1). Skips are the outputs of blocks 3/6/9/12 *before* the final norm
  (``forward_intermediates(indices=[2, 5, 8, 11], norm=False)``), CLS token dropped, as
  ``384×H/16×W/16`` maps.
* Shared skip path: ``decoder0`` two Conv-BN-ReLU on the image (3 → 32 → 64, full
  resolution); ``decoder1`` three Deconv blocks (384 → 256 → 128 → 128, stride 2);
  ``decoder2`` two (384 → 256 → 256, stride 4); ``decoder3`` one (384 → 312, stride 8).
  A Deconv block is a 2×2 stride-2 transposed conv, then 3×3 conv, BN, ReLU.
* Three separate upsampling branches (NP 2, HV 2, type 2 channels), each: bottleneck
  transposed conv 384 → 312; ⊕ decoder3 → 3 Conv blocks at 312 → transposed conv to 256;
  ⊕ decoder2 → 2 Conv blocks → 128; ⊕ decoder1 → 2 Conv blocks → 64; ⊕ decoder0 → 2 Conv
  blocks at 64 → 1×1 conv. All convolutions have a bias (PyTorch default).

46,742,774 parameters = 21,665,664 (ViT-S) + 4,689,824 (shared skips) + 3 × 6,795,762.

The tissue-type head of the original (an identity on the CLS token when there are 0 tissue
classes, loss weight 0 in the fork) has no parameters and is left out.

Pretrained weights: HIPT's ``vit256_small_dino.pth`` from a local file
(:func:`load_hipt_state_dict`); timm resamples the 224-token positional embedding per input
instead of DINO's bicubic-with-0.1-offset interpolation, so the skip features differ by up
to ~0.02 (max-abs) from the original for identical weights (``recipes.md`` §4.1).
"""

from __future__ import annotations

import argparse
import pickle
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from examples.common.deps import require_timm
from examples.common.freeze import set_requires_grad
from nucfuse_datasets.errors import ArgumentError

__all__ = [
    "BRANCHES",
    "CellViT256",
    "Conv2DBlock",
    "Deconv2DBlock",
    "build_cellvit256",
    "cellvit_infer_fn",
    "load_hipt_state_dict",
]

#: Output keys of :class:`CellViT256` and their channel counts (2 nucleus classes).
BRANCHES = {"nuclei_binary_map": 2, "hv_map": 2, "nuclei_type_map": 2}

EMBED_DIM = 384
SKIP_INDICES = (2, 5, 8, 11)
#: Decoder channels at strides 8/4/2/1 (decoder3, decoder2, decoder1, decoder0 outputs).
DECODER_WIDTHS = (312, 256, 128, 64)
ENCODER_NAME = "vit_small_patch16_224"


class Conv2DBlock(nn.Sequential):
    """3×3 conv (bias) → BatchNorm → ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Deconv2DBlock(nn.Sequential):
    """2×2 stride-2 transposed conv → 3×3 conv → BatchNorm → ReLU (doubles the resolution)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


def _up(in_channels: int, out_channels: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)


class _Branch(nn.Module):
    """One upsampling branch from the bottleneck and the four shared skips to ``out`` maps.

    ``widths = (w3, w2, w1, w0)`` are the channels at strides 8/4/2/1 (312, 256, 128, 64).
    """

    def __init__(
        self, out_channels: int, embed_dim: int = EMBED_DIM, widths: tuple[int, int, int, int] = DECODER_WIDTHS
    ) -> None:
        super().__init__()
        w3, w2, w1, w0 = widths
        self.bottleneck_up = _up(embed_dim, w3)
        self.stage3 = nn.Sequential(Conv2DBlock(2 * w3, w3), Conv2DBlock(w3, w3), Conv2DBlock(w3, w3), _up(w3, w2))
        self.stage2 = nn.Sequential(Conv2DBlock(2 * w2, w2), Conv2DBlock(w2, w2), _up(w2, w1))
        self.stage1 = nn.Sequential(Conv2DBlock(2 * w1, w1), Conv2DBlock(w1, w1), _up(w1, w0))
        self.header = nn.Sequential(Conv2DBlock(2 * w0, w0), Conv2DBlock(w0, w0), nn.Conv2d(w0, out_channels, 1))

    def forward(
        self, z4: torch.Tensor, s0: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor, s3: torch.Tensor
    ) -> torch.Tensor:
        x = self.bottleneck_up(z4)
        x = self.stage3(torch.cat([s3, x], dim=1))
        x = self.stage2(torch.cat([s2, x], dim=1))
        x = self.stage1(torch.cat([s1, x], dim=1))
        return self.header(torch.cat([s0, x], dim=1))


def load_hipt_state_dict(path: str | Path, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read a HIPT / DINO checkpoint into a timm ViT state dict.

    Takes the ``"teacher"`` entry when present (else the whole mapping, or its ``"model"`` /
    ``"state_dict"`` entry), strips the ``module.`` and ``backbone.`` prefixes and drops
    ``head.*`` (the DINO projection head).

    Args:
        path: local checkpoint file (e.g. HIPT's ``vit256_small_dino.pth``).
        allow_pickle: fall back to full unpickling when the safe loader refuses the file. Only
            for checkpoints you trust: unpickling can run arbitrary code.

    Returns:
        The encoder state dict.

    Raises:
        ArgumentError: the file is missing or cannot be read safely.
    """
    p = Path(path)
    if not p.is_file():
        raise ArgumentError(f"checkpoint {str(p)!r} is not a file")
    try:
        # DINO checkpoints carry an argparse.Namespace of the training arguments.
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError) as exc:
        if not allow_pickle:
            raise ArgumentError(
                f"{p} cannot be loaded with torch.load(weights_only=True) ({exc}); pass "
                "allow_pickle=True if you trust the file"
            ) from exc
        ckpt = torch.load(p, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, Mapping):
        raise ArgumentError(f"{p} does not hold a state dict")
    for key in ("teacher", "model", "state_dict"):
        if key in ckpt and isinstance(ckpt[key], Mapping):
            ckpt = ckpt[key]
            break
    state: dict[str, torch.Tensor] = {}
    for key, value in ckpt.items():
        name = str(key)
        for prefix in ("module.", "backbone."):
            name = name.removeprefix(prefix)
        if name.startswith("head.") or not isinstance(value, torch.Tensor):
            continue
        state[name] = value
    return state


class CellViT256(nn.Module):
    """CellViT with a ViT-S/16 (HIPT-256) encoder; 2 nucleus classes, no tissue head.

    Args:
        pretrained_path: local HIPT ``vit256_small_dino.pth`` (or any DINO ViT-S/16
            checkpoint). Never downloaded; without it the encoder is randomly initialised and
            a warning says the paper's numbers assume HIPT pretraining.
        num_nuclei_classes: channels of ``nuclei_type_map`` (2: background, nucleus; ``K + 1`` for
            class-aware training, as upstream CellViT's 6 for PanNuke).
        drop_path_rate: encoder stochastic depth (0.1).
        attn_drop_rate: encoder attention dropout (0.1).
        drop_rate: encoder dropout (0).
        allow_pickle: see :func:`load_hipt_state_dict`.
        encoder_name: timm ViT with 12 blocks (``vit_small_patch16_224``).
        decoder_widths: decoder channels at strides 8/4/2/1 ((312, 256, 128, 64)).

    Non-default ``encoder_name``/``decoder_widths`` give scaled-down variants for CPU smoke
    tests (e.g. ``vit_tiny_patch16_224`` with ``(32, 16, 16, 8)``); the recipe uses the
    defaults.

    Input side lengths must be multiples of 16 (the recipe pads test tiles to 32).
    The forward pass returns a dict of logits: ``nuclei_binary_map`` ``B×2×H×W``,
    ``hv_map`` ``B×2×H×W`` and ``nuclei_type_map`` ``B×C×H×W``.
    """

    def __init__(
        self,
        *,
        pretrained_path: str | Path | None = None,
        num_nuclei_classes: int = 2,
        drop_path_rate: float = 0.1,
        attn_drop_rate: float = 0.1,
        drop_rate: float = 0.0,
        allow_pickle: bool = False,
        encoder_name: str = ENCODER_NAME,
        decoder_widths: tuple[int, int, int, int] = DECODER_WIDTHS,
    ) -> None:
        super().__init__()
        timm = require_timm()
        self.encoder = timm.create_model(
            encoder_name,
            pretrained=False,
            num_classes=0,
            dynamic_img_size=True,
            drop_path_rate=drop_path_rate,
            attn_drop_rate=attn_drop_rate,
            drop_rate=drop_rate,
        )
        if pretrained_path is not None:
            state = load_hipt_state_dict(pretrained_path, allow_pickle=allow_pickle)
            result = self.encoder.load_state_dict(state, strict=False)
            if result.missing_keys:
                warnings.warn(
                    f"HIPT checkpoint is missing {len(result.missing_keys)} encoder tensors "
                    f"(e.g. {result.missing_keys[:3]}); they stay randomly initialised",
                    stacklevel=2,
                )
        else:
            warnings.warn(
                "CellViT encoder randomly initialised (no pretrained_path); the paper's numbers "
                "assume HIPT vit256_small_dino weights",
                stacklevel=2,
            )
        dim = int(self.encoder.embed_dim)
        w3, w2, w1, w0 = (int(w) for w in decoder_widths)
        self.decoder0 = nn.Sequential(Conv2DBlock(3, w0 // 2), Conv2DBlock(w0 // 2, w0))
        self.decoder1 = nn.Sequential(Deconv2DBlock(dim, w2), Deconv2DBlock(w2, w1), Deconv2DBlock(w1, w1))
        self.decoder2 = nn.Sequential(Deconv2DBlock(dim, w2), Deconv2DBlock(w2, w2))
        self.decoder3 = nn.Sequential(Deconv2DBlock(dim, w3))
        channels = dict(BRANCHES, nuclei_type_map=num_nuclei_classes)
        self.branches = nn.ModuleDict({name: _Branch(c, dim, (w3, w2, w1, w0)) for name, c in channels.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``B×3×H×W`` (normalised with mean = std = 0.5) → dict of ``B×C×H×W`` logits."""
        if x.shape[-1] % 16 or x.shape[-2] % 16:
            raise ArgumentError(f"input height and width must be multiples of 16, got {tuple(x.shape)}")
        z1, z2, z3, z4 = self.encoder.forward_intermediates(
            x, indices=list(SKIP_INDICES), norm=False, output_fmt="NCHW", intermediates_only=True
        )
        s0 = self.decoder0(x)
        s1 = self.decoder1(z1)
        s2 = self.decoder2(z2)
        s3 = self.decoder3(z3)
        return {name: branch(z4, s0, s1, s2, s3) for name, branch in self.branches.items()}

    def freeze_encoder(self) -> None:
        """Stop training the ViT (recipe: 0-based epochs 0–24)."""
        set_requires_grad(self.encoder, False)

    def unfreeze_encoder(self) -> None:
        """Train the ViT again (recipe: from 0-based epoch 25)."""
        set_requires_grad(self.encoder, True)


def build_cellvit256(pretrained_path: str | Path | None = None, **kwargs: object) -> CellViT256:
    """Build the NucFuseRank CellViT-256 (see :class:`CellViT256`)."""
    return CellViT256(pretrained_path=pretrained_path, **kwargs)  # type: ignore[arg-type]


def cellvit_infer_fn(model: nn.Module, *, types: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """Adapter for ``nucfuse_datasets.transforms.postprocess``: ``B×3×H×W`` → ``[p(nucleus), H, V]``.

    ``p(nucleus) > 0.5`` equals the original's argmax over the two softmaxed channels. ``types=True``
    (a class-aware model, ``num_nuclei_classes = K + 1``) appends the softmax of ``nuclei_type_map``,
    whose argmax is CellViT's per-pixel type. Call ``model.eval()`` first.
    """

    def fn(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        prob = torch.softmax(out["nuclei_binary_map"], dim=1)[:, 1:2]
        maps = [prob, out["hv_map"]]
        if types:
            maps.append(torch.softmax(out["nuclei_type_map"], dim=1))
        return torch.cat(maps, dim=1)

    return fn
