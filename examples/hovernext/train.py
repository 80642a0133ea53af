"""Train HoVerNeXt on NucFuse-train as run in NucFuseRank.

Usage (from the repository root)::

    python -m examples.hovernext.train --config examples/hovernext/config.toml --root DATA --out runs/hovernext
    torchrun --nproc_per_node=4 -m examples.hovernext.train --config examples/hovernext/config.toml ...
    python -m examples.hovernext.train --resume runs/hovernext/last.pt

See ``examples/README.md`` and ``--help``.
"""

from __future__ import annotations

from collections.abc import Sequence

from examples.common.cli import train_main
from examples.hovernext.spec import SPEC

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the training entry point with ``argv`` (default: ``sys.argv[1:]``)."""
    return train_main(SPEC, argv)


if __name__ == "__main__":
    raise SystemExit(main())
