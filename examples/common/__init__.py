"""Helpers shared by the recipes: dependencies, freezing, Sample ops, tensors, and the training machinery.

The training loop (``training.py``), evaluation (``evaluation.py``), command lines (``cli.py``), configuration
(``config.py``), checkpoints (``checkpoint.py``), metrics log (``csvlog.py``), early stopping
(``early_stopping.py``), torchrun/DDP helpers (``distributed.py``) and the recipe hook interface (``spec.py``).
"""
