"""``python -m examples.cellvit.train`` = ``python -m examples.train --recipe cellvit`` (the shared runner).

E.g. ``--config examples/cellvit/config.toml --root DATA --out runs/cellvit``; under ``torchrun
--nproc_per_node=4 -m examples.cellvit.train ...``; ``--resume runs/cellvit/last.pt``. See ``--help``.
"""

from examples.common.cli import recipe_main

main = recipe_main("cellvit", "train", __name__)  # under ``python -m`` this runs and exits
