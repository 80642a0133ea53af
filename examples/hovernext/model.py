"""HoVerNeXt as run in NucFuseRank (``recipes.md`` §2.2, §4): a clean re-implementation.

* Encoder: timm ``convnextv2_tiny`` as a feature extractor (``features_only``, out_indices
  0–3: strides 4/8/16/32, channels 96/192/384/768), stochastic depth 0.25.
* **Two** identical U-Net decoders without BatchNorm: channels 256-128-64-32 plus a
  32 → 16 block at full resolution. Each block: nearest ×2 upsampling, concatenation of the
  encoder skip (strides 16/8/4; the last two blocks have none), two 3×3 conv (bias) + ReLU.
  Kaiming-uniform (fan-in, ReLU gain) weights, zero bias.
* Heads: 1×1 "inst" (5 channels) on the first decoder and 1×1 "cls" (1 channel) on the
  second, Xavier-uniform, concatenated into 6 output channels:
  ``[H, V, 3-class logits ×3 (background, interior, border), NP logit]``.

36,083,110 parameters = 27,864,960 (encoder) + 2 × 4,109,024 (decoders) + 102 (heads).

Class-aware variant (``cls_channels = K + 2``, not the paper's; ``examples/common/classes.py``): the "cls" head
of the second (class) decoder also gives the ``K + 1`` type logits (background + K classes) that upstream
HoVerNeXt's class head gives, after the NP logit the binary recipe uses, so the output is
``[H, V, 3-class ×3, NP, type ×(K + 1)]`` and everything the binary recipe reads keeps its channel.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from examples.common.deps import require_timm
from examples.common.freeze import set_requires_grad
from nucfuse_datasets.errors import ArgumentError

__all__ = [
    "HV_CHANNELS",
    "NP_CHANNEL",
    "THREE_CLASS_CHANNELS",
    "TYPE_CHANNELS",
    "DecoderBlock",
    "HoVerNeXt",
    "UNetDecoder",
    "build_hovernext",
    "hovernext_infer_fn",
]

#: Output channel layout of :class:`HoVerNeXt`.
HV_CHANNELS = slice(0, 2)
THREE_CLASS_CHANNELS = slice(2, 5)
NP_CHANNEL = 5
#: The type logits of a class-aware model (``cls_channels = K + 2``); empty for the binary recipe.
TYPE_CHANNELS = slice(6, None)

ENCODER_NAME = "convnextv2_tiny"
PRETRAINED_TAG = "fcmae_ft_in22k_in1k"


class DecoderBlock(nn.Module):
    """Nearest ×2 upsample, optional skip concatenation, two 3×3 conv + ReLU (no BN)."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels + skip_channels, out_channels, 3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        x = F.relu(self.conv1(x))
        return F.relu(self.conv2(x))


class UNetDecoder(nn.Module):
    """U-Net decoder over encoder features at strides 4/8/16/32, output at stride 1."""

    def __init__(
        self,
        encoder_channels: Sequence[int] = (96, 192, 384, 768),
        decoder_channels: Sequence[int] = (256, 128, 64, 32),
        final_channels: int = 16,
    ) -> None:
        super().__init__()
        enc = list(encoder_channels)[::-1]  # deepest first: 768, 384, 192, 96
        ins = [enc[0], *decoder_channels[:-1]]
        skips = [*enc[1:], 0]
        blocks = [DecoderBlock(i, s, o) for i, s, o in zip(ins, skips, decoder_channels, strict=True)]
        blocks.append(DecoderBlock(decoder_channels[-1], 0, final_channels))
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = final_channels
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        feats = list(features)[::-1]
        x = feats[0]
        skips = feats[1:]
        for i, block in enumerate(self.blocks):
            x = block(x, skips[i] if i < len(skips) else None)
        return x


def _head(in_channels: int, out_channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, 1)
    nn.init.xavier_uniform_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class HoVerNeXt(nn.Module):
    """ConvNeXt-V2 encoder, instance and class U-Net decoders, 6-channel output.

    Args:
        pretrained_path: local ``model.safetensors`` / ``pytorch_model.bin`` of timm's
            ``convnextv2_tiny.fcmae_ft_in22k_in1k`` (the full classifier's state dict). Never
            downloaded; without it the encoder is randomly initialised and a warning says the
            paper's numbers assume ImageNet pretraining.
        drop_path_rate: encoder stochastic depth (0.25).
        inst_channels: channels of the "inst" head (5: H, V and 3-class logits).
        cls_channels: channels of the "cls" head (1: the NP logit; ``K + 2`` for class-aware training: the NP
            logit, then ``K + 1`` type logits).
        encoder_name: timm model name.
        decoder_channels: channels of the four skip-connected decoder blocks (256, 128, 64, 32).
        final_channels: channels of the extra full-resolution block (16).

    Non-default ``encoder_name``/``decoder_channels``/``final_channels`` give scaled-down
    variants for CPU smoke tests (e.g. ``convnextv2_atto`` with ``(32, 16, 16, 8)``); the
    recipe uses the defaults.

    Input side lengths must be multiples of 32; see
    :func:`nucfuse_datasets.transforms.postprocess.pad_to_multiple`.
    """

    def __init__(
        self,
        *,
        pretrained_path: str | Path | None = None,
        drop_path_rate: float = 0.25,
        inst_channels: int = 5,
        cls_channels: int = 1,
        encoder_name: str = ENCODER_NAME,
        decoder_channels: Sequence[int] = (256, 128, 64, 32),
        final_channels: int = 16,
    ) -> None:
        super().__init__()
        timm = require_timm()
        kwargs: dict[str, object] = {
            "features_only": True,
            "out_indices": (0, 1, 2, 3),
            "drop_rate": 0.5,  # as run; no effect with features_only (there is no head)
            "drop_path_rate": drop_path_rate,
        }
        if pretrained_path is not None:
            path = Path(pretrained_path)
            if not path.is_file():
                raise ArgumentError(f"pretrained_path {str(path)!r} is not a file")
            self.encoder = timm.create_model(
                f"{encoder_name}.{PRETRAINED_TAG}" if "." not in encoder_name else encoder_name,
                pretrained=True,
                pretrained_cfg_overlay={"file": str(path)},
                **kwargs,
            )
        else:
            warnings.warn(
                "HoVerNeXt encoder randomly initialised (no pretrained_path); the paper's numbers "
                "assume ImageNet-pretrained convnextv2_tiny.fcmae_ft_in22k_in1k weights",
                stacklevel=2,
            )
            self.encoder = timm.create_model(encoder_name, pretrained=False, **kwargs)
        channels = tuple(self.encoder.feature_info.channels())
        self.decoder_inst = UNetDecoder(channels, decoder_channels, final_channels)
        self.decoder_cls = UNetDecoder(channels, decoder_channels, final_channels)
        self.head_inst = _head(self.decoder_inst.out_channels, inst_channels)
        self.head_cls = _head(self.decoder_cls.out_channels, cls_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B×3×H×W`` (ImageNet-normalised) → ``B×(5 + cls_channels)×H×W`` raw outputs (6 for the recipe)."""
        if x.shape[-1] % 32 or x.shape[-2] % 32:
            raise ArgumentError(f"input height and width must be multiples of 32, got {tuple(x.shape)}")
        features = self.encoder(x)
        inst = self.head_inst(self.decoder_inst(features))
        cls = self.head_cls(self.decoder_cls(features))
        return torch.cat([inst, cls], dim=1)

    def freeze_encoder(self) -> None:
        """Stop training the encoder (recipe: 1-based epochs 1–24)."""
        set_requires_grad(self.encoder, False)

    def unfreeze_encoder(self) -> None:
        """Train the encoder again (recipe: from 1-based epoch 25)."""
        set_requires_grad(self.encoder, True)


def build_hovernext(pretrained_path: str | Path | None = None, **kwargs: object) -> HoVerNeXt:
    """Build the NucFuseRank HoVerNeXt (see :class:`HoVerNeXt`)."""
    return HoVerNeXt(pretrained_path=pretrained_path, **kwargs)  # type: ignore[arg-type]


def hovernext_infer_fn(model: nn.Module, *, types: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """Adapter for ``nucfuse_datasets.transforms.postprocess``: ``B×3×H×W`` → ``[σ(NP), H, V]``.

    The 3-class head is not used at inference (``recipes.md`` §2.4). ``types=True`` (a class-aware
    model) appends the softmax of the ``K + 1`` type logits. Call ``model.eval()`` first.
    """

    def fn(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        maps = [torch.sigmoid(out[:, NP_CHANNEL : NP_CHANNEL + 1]), out[:, HV_CHANNELS]]
        if types:
            if out.shape[1] <= NP_CHANNEL + 2:
                raise ArgumentError(f"types=True needs a class-aware model (cls_channels = K + 2), got {out.shape[1]}")
            maps.append(torch.softmax(out[:, TYPE_CHANNELS], dim=1))
        return torch.cat(maps, dim=1)

    return fn
