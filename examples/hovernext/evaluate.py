"""``python -m examples.hovernext.evaluate`` = ``python -m examples.evaluate --recipe hovernext`` (the shared runner).

E.g. ``--checkpoint runs/hovernext/best.pt`` writes ``report.json/.csv/.md`` into ``runs/hovernext/eval``.
"""

from examples.common.cli import recipe_main

main = recipe_main("hovernext", "evaluate", __name__)  # under ``python -m`` this runs and exits
