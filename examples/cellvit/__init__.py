"""CellViT-256 as run in NucFuseRank: ViT-S/16 encoder, shared skip path, NP / HV / type branches."""

import os

# albumentations (the augmentation) asks PyPI for a newer version when it is imported; no network calls on the
# user's behalf. An explicit setting wins.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
