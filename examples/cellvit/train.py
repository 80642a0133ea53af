"""Train CellViT on NucFuse-train as run in NucFuseRank.

Usage (from the repository root)::

    python -m examples.cellvit.train --config examples/cellvit/config.toml --root DATA --out runs/cellvit
    torchrun --nproc_per_node=4 -m examples.cellvit.train --config examples/cellvit/config.toml ...
    python -m examples.cellvit.train --resume runs/cellvit/last.pt

See ``examples/README.md`` and ``--help``.
"""

from __future__ import annotations

from collections.abc import Sequence

from examples.cellvit.spec import SPEC
from examples.common.cli import train_main

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the training entry point with ``argv`` (default: ``sys.argv[1:]``)."""
    return train_main(SPEC, argv)


if __name__ == "__main__":
    raise SystemExit(main())
