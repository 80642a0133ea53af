"""Reference training recipes (HoVerNeXt, CellViT) built on ``nucfuse_datasets``; run from the repo root."""
