"""``python -m examples.hovernext.train`` = ``python -m examples.train --recipe hovernext`` (the shared runner).

E.g. ``--config examples/hovernext/config.toml --root DATA --out runs/hovernext``; under ``torchrun
--nproc_per_node=4 -m examples.hovernext.train ...``; ``--resume runs/hovernext/last.pt``. See ``--help``.
"""

from examples.common.cli import recipe_main

main = recipe_main("hovernext", "train", __name__)  # under ``python -m`` this runs and exits
