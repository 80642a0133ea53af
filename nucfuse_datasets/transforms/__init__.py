"""Transforms around a model: stain handling, training targets, ecosystem adapters, HoVer-Net post-processing.

* :mod:`nucfuse_datasets.transforms.stain` — stain normalisation and augmentation;
* :mod:`nucfuse_datasets.transforms.targets` — training targets (NP, HV, class maps) from instance maps;
* :mod:`nucfuse_datasets.transforms.postprocess` — the inverse: model maps back to instances (HoVer-Net family),
  whole-tile inference;
* :mod:`nucfuse_datasets.transforms.adapters` — joint transforms with torchvision v2 and albumentations
  (:class:`TorchVision`, :class:`Albumentations`, re-exported here).
"""

from __future__ import annotations

from nucfuse_datasets.transforms.adapters import Albumentations, TorchVision

__all__ = ["Albumentations", "TorchVision"]
