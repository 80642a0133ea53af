"""``python -m examples.cellvit.evaluate`` = ``python -m examples.evaluate --recipe cellvit`` (the shared runner).

E.g. ``--checkpoint runs/cellvit/best.pt`` writes ``report.json/.csv/.md`` into ``runs/cellvit/eval``.
"""

from examples.common.cli import recipe_main

main = recipe_main("cellvit", "evaluate", __name__)  # under ``python -m`` this runs and exits
