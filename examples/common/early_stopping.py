"""Early stopping on a maximised validation metric, with the two recipes' conventions."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["EarlyStopping"]


class EarlyStopping:
    """Track the best validation score and the epochs without improvement.

    An epoch *improves* when its score is strictly greater than the best so far (NaN never improves).

    Args:
        patience: epochs without improvement tolerated.
        stop_when_exceeds: HoVerNeXt's rule (stop once the count of epochs without improvement *exceeds*
            ``patience``) when ``True``; the usual ``count >= patience`` (CellViT) when ``False``.
        save_on_tie: :meth:`step` reports an equal score as "save the best model" (CellViT keeps ``model_best``
            whenever the score is ``>=`` the best); HoVerNeXt saves only on a strict improvement.
        enabled: ``False`` never stops (the best score is still tracked).
    """

    def __init__(
        self, patience: int, *, stop_when_exceeds: bool = True, save_on_tie: bool = False, enabled: bool = True
    ) -> None:
        self.patience = int(patience)
        self.stop_when_exceeds = stop_when_exceeds
        self.save_on_tie = save_on_tie
        self.enabled = enabled
        self.best = -math.inf
        self.best_epoch = 0
        self.bad_epochs = 0

    def step(self, score: float, epoch: int) -> bool:
        """Record the score of ``epoch``; returns whether this epoch's weights are the new best to save."""
        valid = not math.isnan(score)
        improved = valid and score > self.best
        save = improved or (valid and self.save_on_tie and score == self.best)
        if improved:
            self.best = float(score)
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        if save:
            self.best_epoch = int(epoch)
        return save

    @property
    def should_stop(self) -> bool:
        """Whether training should stop after the last :meth:`step`."""
        if not self.enabled:
            return False
        if self.stop_when_exceeds:
            return self.bad_epochs > self.patience
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """The counters, for checkpoints."""
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])
