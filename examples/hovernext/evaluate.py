"""Evaluate a HoVerNeXt checkpoint on NucFuse-test (whole-tile inference, reflect-pad to 32, §2.4 post-processing).

Usage (from the repository root)::

    python -m examples.hovernext.evaluate --checkpoint runs/hovernext/best.pt [--out runs/hovernext/eval]

Writes ``report.json``, ``report.csv`` and ``report.md``. See ``examples/README.md`` and ``--help``.
"""

from __future__ import annotations

from collections.abc import Sequence

from examples.common.cli import evaluate_main
from examples.hovernext.spec import SPEC

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the evaluation entry point with ``argv`` (default: ``sys.argv[1:]``)."""
    return evaluate_main(SPEC, argv)


if __name__ == "__main__":
    raise SystemExit(main())
