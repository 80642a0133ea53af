"""Checkpoints: atomic writes, safe loading, and the RNG states that make a resumed run repeat an uninterrupted one.

A training checkpoint (``last.pt``) is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)``: ``model``, ``optimizer``, ``scheduler``, ``scaler``, ``epoch`` (completed
epochs), ``best_metric``, ``best_epoch``, ``early_stopping``, ``rng`` (one state per rank), ``config`` (the resolved
run configuration), ``recipe``, ``world_size``, ``finished`` and ``library_version``. ``best.pt`` holds the model
weights of the best validation epoch with the same ``config``.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nucfuse_datasets.errors import ArgumentError
from nucfuse_datasets.io.files import default_file_mode

__all__ = ["get_rng_state", "load_checkpoint", "save_checkpoint", "set_rng_state"]


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """Write ``payload`` with :func:`torch.save` atomically (temporary file in the same folder, then ``os.replace``).

    A crash while writing leaves the previous file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, default_file_mode())  # the umask's mode, not mkstemp's private 0600 (shared result folders)
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no arbitrary unpickling).

    Raises:
        ArgumentError: the file is missing or is not a checkpoint dict.
    """
    path = Path(path)
    if not path.is_file():
        raise ArgumentError(f"checkpoint {str(path)!r} not found")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ArgumentError(f"{path} is not a checkpoint of the reference recipes (no 'model' entry)")
    return ckpt


def get_rng_state() -> dict[str, Any]:
    """The states of ``random``, numpy's global generator, torch's CPU generator and every CUDA generator."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_name, torch.from_numpy(np.asarray(np_keys, dtype=np.int64)), np_pos, np_has_gauss, np_gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states saved by :func:`get_rng_state` (CUDA states only where the device count matches)."""
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    keys = np.asarray(torch.as_tensor(np_keys).cpu().numpy(), dtype=np.uint32)
    np.random.set_state((np_name, keys, int(np_pos), int(np_has_gauss), float(np_gauss)))
    torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8).cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([torch.as_tensor(s, dtype=torch.uint8).cpu() for s in cuda])
