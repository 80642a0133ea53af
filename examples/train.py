"""Train a recipe on NucFuse-train: ``python -m examples.train --recipe {hovernext,cellvit} ...``.

The one runner of every recipe (:mod:`examples.common.cli`); ``python -m examples.<recipe>.train`` is the same.
"""

import sys

from examples.common.cli import runner_main

if __name__ == "__main__":
    raise SystemExit(runner_main("train", sys.argv[1:]))
