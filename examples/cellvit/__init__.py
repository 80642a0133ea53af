"""CellViT-256 as run in NucFuseRank: ViT-S/16 encoder, shared skip path, NP / HV / type branches."""
