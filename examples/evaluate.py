"""Evaluate a recipe's checkpoint on NucFuse-test: ``python -m examples.evaluate --recipe {hovernext,cellvit} ...``.

The one runner of every recipe (:mod:`examples.common.cli`); ``python -m examples.<recipe>.evaluate`` is the same.
"""

import sys

from examples.common.cli import runner_main

if __name__ == "__main__":
    raise SystemExit(runner_main("evaluate", sys.argv[1:]))
