"""Resumable training state: model variables, optimizer variables and the loop's counters.

A checkpoint is a directory `CHECKPOINT_DIR/latest/` holding model.npz (every model variable,
including the dropout RNG state), optimizer_<name>.npz (slots, step counter) and state.json
(step, best score, running loss, ...). It is written to `tmp/` and swapped in with renames, so
a process killed at any moment leaves either the previous or the new checkpoint (`old/` covers
the instant between the two renames).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from albert_ner.model_dir import load_weights, save_weights, write_json


def save_checkpoint(directory: Path, model, optimizers: dict, state: dict) -> None:
    """Writes `directory/latest` atomically (see module docstring)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp, latest, old = directory / "tmp", directory / "latest", directory / "old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_weights(model, tmp / "model.npz")
    for name, optimizer in optimizers.items():
        np.savez(tmp / f"optimizer_{name}.npz", *[np.asarray(v.numpy()) for v in optimizer.variables])
    write_json(tmp / "state.json", state)
    shutil.rmtree(old, ignore_errors=True)
    if latest.exists():
        os.replace(latest, old)
    os.replace(tmp, latest)
    shutil.rmtree(old, ignore_errors=True)


def restore_checkpoint(directory: Path, model, optimizers: dict) -> dict | None:
    """Loads the newest complete checkpoint into model and optimizers; returns its state."""
    directory = Path(directory)
    for candidate in (directory / "latest", directory / "old"):
        if (candidate / "state.json").exists():
            break
    else:
        return None
    state = json.loads((candidate / "state.json").read_text(encoding="utf-8"))
    load_weights(model, candidate / "model.npz")
    for name, optimizer in optimizers.items():
        with np.load(candidate / f"optimizer_{name}.npz") as data:
            if len(data.files) != len(optimizer.variables):
                raise ValueError(
                    f"{candidate}: optimizer '{name}' has {len(data.files)} saved variables, "
                    f"the run has {len(optimizer.variables)} (different model or options?)"
                )
            for i, var in enumerate(optimizer.variables):
                var.assign(data[f"arr_{i}"])
    return state
