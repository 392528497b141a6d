"""Resumable training state: model variables, optimizer variables and the loop's counters.

Layout of CHECKPOINT_DIR:

  latest/    the newest complete checkpoint: model.npz (every model variable, including the
             dropout RNG state), optimizer_<name>.npz (the `.variables` of every entry of the
             optimizers dict: slots, step counters, and whatever else a loop registers there,
             e.g. a loss-scale state) and state.json (step, best score, running loss, ...)
  old/       the complete checkpoint before it, kept as a fallback
  tmp/       a checkpoint being written (never read)
  damaged/   a latest/ that failed to load and was set aside (see `restore_checkpoint`)

Writing: tmp/ is written and fsynced, then old/ is dropped, latest/ renamed to old/ and tmp/
to latest/. A process killed at any instant (SIGKILL, power loss, a full disk) leaves at
least one complete checkpoint in latest/ or old/ — between the two renames, old/ alone.
The name `old/` for the previous checkpoint is the one earlier versions used for that very
instant, so their checkpoints resume, and `sagemaker.contract.has_checkpoint` finds either.

Reading: a candidate is read whole and checked (every file present and parseable, every
array of the expected count and shape) before any variable is assigned, so a failed load
never leaves a model half restored. A damaged latest/ is reported (path and what is wrong)
and the run falls back to old/.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from albert_ner.durable_io import explain_disk_full, fsync_dir, fsync_tree, npz_bytes
from albert_ner.model_dir import read_weights, weight_arrays

LATEST, PREVIOUS, STAGING, DAMAGED = "latest", "old", "tmp", "damaged"
MODEL_FILE, STATE_FILE = "model.npz", "state.json"

# What reading a damaged file raises: missing (OSError), not an npz or cut short (BadZipFile,
# EOFError, ValueError), an array or key absent (KeyError), bad JSON (ValueError).
_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile)


def optimizer_file(name: str) -> str:
    return f"optimizer_{name}.npz"


class CheckpointDamaged(ValueError):
    """One checkpoint directory cannot be used; the message says which file and why."""


class NoUsableCheckpoint(ValueError):
    """--resume found checkpoints but none of them loads (each one's reason in the message)."""


# ---------------------------------------------------------------------------- writing
def save_checkpoint(directory: Path, model, optimizers: dict, state: dict) -> None:
    """Writes a complete checkpoint as `directory/latest`, keeping the one before as `old`.

    Contract: when this returns, latest/ is on disk in full; when it raises (a full disk,
    say: `DiskFullError` naming the path and the bytes needed) or the process dies, the
    checkpoints that were there before are untouched.
    """
    directory = Path(directory)
    staging = directory / STAGING
    shutil.rmtree(staging, ignore_errors=True)  # a write a killed process left behind
    model_arrays = weight_arrays(model)
    optimizer_arrays = {
        name: [np.asarray(v.numpy()) for v in optimizer.variables] for name, optimizer in optimizers.items()
    }
    state_json = json.dumps(state, ensure_ascii=False, indent=2) + "\n"
    needed = npz_bytes(model_arrays.values()) + sum(npz_bytes(a) for a in optimizer_arrays.values()) + len(state_json)
    with explain_disk_full(staging, needed, f"The checkpoints already in {directory} are unchanged."):
        try:
            staging.mkdir(parents=True)
            np.savez(staging / MODEL_FILE, **model_arrays)
            for name, arrays in optimizer_arrays.items():
                np.savez(staging / optimizer_file(name), *arrays)
            (staging / STATE_FILE).write_text(state_json, encoding="utf-8")
            fsync_tree(staging)  # data on disk before the renames make it the checkpoint
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    _promote(directory)


def _promote(directory: Path) -> None:
    """tmp/ → latest/, the former latest/ → old/ (see the module docstring for why it is safe)."""
    staging, latest, previous = directory / STAGING, directory / LATEST, directory / PREVIOUS
    if latest.exists():
        # Only now that a newer complete checkpoint exists may the oldest one go. Without a
        # latest/ (a crash between the renames, or a damaged one set aside), old/ is the only
        # complete checkpoint and stays.
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(latest, previous)
    os.replace(staging, latest)
    fsync_dir(directory)


# ---------------------------------------------------------------------------- reading
@dataclasses.dataclass
class _Checkpoint:
    """A checkpoint read and checked against the run, not yet assigned to it."""

    path: Path
    state: dict
    model_values: list
    optimizer_values: dict  # entries absent from the checkpoint (see below) are left out

    def assign(self, model, optimizers: dict) -> None:
        for var, value in zip(model.variables, self.model_values):
            var.assign(value)
        for name, values in self.optimizer_values.items():
            for var, value in zip(optimizers[name].variables, values):
                var.assign(value)


def restore_checkpoint(directory: Path, model, optimizers: dict, log: Callable[[str], None] = print) -> dict | None:
    """Loads the newest usable checkpoint into model and optimizers; returns its state.

    Returns None when `directory` holds no checkpoint at all (a fresh run). A damaged
    latest/ is logged and set aside as damaged/ (so the next save cannot rotate it over the
    good old/), and old/ is loaded instead.

    Raises:
      NoUsableCheckpoint: checkpoints exist but none loads. Deliberately not "start from step
        0": --resume promises to continue, and starting over would silently replace the run's
        metrics and best weights and overwrite the damaged files someone may want to inspect.
        The message lists every candidate's problem and how to start over on purpose.
    """
    directory = Path(directory)
    candidates = [directory / name for name in (LATEST, PREVIOUS) if (directory / name).exists()]
    if not candidates:
        return None
    problems = []
    for candidate in candidates:
        try:
            checkpoint = _read_checkpoint(candidate, model, optimizers)
        except CheckpointDamaged as err:
            log(f"checkpoint: {candidate} is unusable: {err}")
            problems.append(f"{candidate}: {err}")
            continue
        if problems:
            log(f"checkpoint: falling back to {candidate} (step {checkpoint.state['step']})")
            _set_aside(directory)
        for name in sorted(set(optimizers) - set(checkpoint.optimizer_values)):
            log(f"checkpoint: {candidate} has no {optimizer_file(name)} (written by a run in another "
                f"precision or an older version); '{name}' starts from its initial values")
        checkpoint.assign(model, optimizers)
        return checkpoint.state
    raise NoUsableCheckpoint(
        f"no usable checkpoint in {directory} to resume from ({'; '.join(problems)}); to start "
        f"over, run without --resume or remove {directory}"
    )


def _set_aside(directory: Path) -> None:
    """latest/ failed to load: keep it as damaged/ for inspection, out of the rotation."""
    damaged = directory / DAMAGED
    shutil.rmtree(damaged, ignore_errors=True)
    if (directory / LATEST).exists():
        os.replace(directory / LATEST, damaged)


def _read_checkpoint(candidate: Path, model, optimizers: dict) -> _Checkpoint:
    """Reads every file of one checkpoint and checks it against the run; assigns nothing.

    Raises:
      CheckpointDamaged: a file is missing, unreadable, or does not fit the run's variables.
    """
    state = _read_state(candidate / STATE_FILE)
    try:
        model_values = read_weights(model, candidate / MODEL_FILE)
    except _READ_ERRORS as err:
        raise CheckpointDamaged(_describe(candidate / MODEL_FILE, err)) from err
    # An entry that may be absent (the fp16 loss scale, `DynamicLossScale`) keeps its initial
    # values when its file is missing; any other missing or damaged file makes the checkpoint
    # unusable.
    optimizer_values = {
        name: _read_optimizer(candidate / optimizer_file(name), name, optimizer)
        for name, optimizer in optimizers.items()
        if (candidate / optimizer_file(name)).exists()
        or not getattr(optimizer, "may_be_absent_from_checkpoint", False)
    }
    return _Checkpoint(candidate, state, model_values, optimizer_values)


def _read_state(path: Path) -> dict:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except _READ_ERRORS as err:
        raise CheckpointDamaged(_describe(path, err)) from err
    if not isinstance(state, dict) or not isinstance(state.get("step"), int) or state["step"] < 0:
        raise CheckpointDamaged(f"{path.name} holds no step count")
    return state


def _read_optimizer(path: Path, name: str, optimizer) -> list:
    variables = list(optimizer.variables)
    try:
        with np.load(path) as data:
            # Every array, read (and CRC-checked) now; a count mismatch is reported below.
            values = [data[f"arr_{i}"] for i in range(len(data.files))]
    except _READ_ERRORS as err:
        raise CheckpointDamaged(_describe(path, err)) from err
    if len(values) != len(variables):
        raise CheckpointDamaged(
            f"{path.name}: optimizer '{name}' has {len(values)} saved variables, "
            f"the run has {len(variables)} (different model or options?)"
        )
    for i, (value, var) in enumerate(zip(values, variables)):
        if tuple(value.shape) != tuple(var.shape):
            raise CheckpointDamaged(
                f"{path.name}: variable {i} ({getattr(var, 'path', var.name)}) has shape "
                f"{value.shape}, the run expects {tuple(var.shape)} (different model or options?)"
            )
    return values


def _describe(path: Path, err: BaseException) -> str:
    """What is wrong with one file, in a few words."""
    if isinstance(err, FileNotFoundError):
        return f"{path.name} is missing"
    if path.exists() and path.stat().st_size == 0:
        return f"{path.name} is empty (0 bytes: renamed before its data reached the disk?)"
    if path.suffix == ".npz" and isinstance(err, ValueError) and "pickle" in str(err):
        # numpy's words for "not a format I know": it would have to unpickle it
        return f"{path.name} is damaged or not an .npz file (numpy cannot read it)"
    if isinstance(err, json.JSONDecodeError):
        return f"{path.name} is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})"
    if isinstance(err, (zipfile.BadZipFile, EOFError)):
        return f"{path.name} is truncated or not an .npz file ({err or type(err).__name__})"
    text = str(err).replace(f"{path}: ", "")  # read_weights prefixes its messages with the path
    return f"{path.name}: {text or type(err).__name__}"
