"""Readers for checkpoint files: TF1 checkpoints, safetensors and `pytorch_model.bin`.

Each reader lists variable shapes without loading values (`shapes`) and reads one tensor on
demand (`get`), so loading a 40 MB albert_base never materialises its ~2x larger optimizer
slots. Unreadable files (truncated, corrupt, wrong format) raise `CheckpointError` with one
sentence naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class CheckpointError(ValueError):
    """A checkpoint, its config or its vocabulary cannot be used (message says why)."""


class TF1Reader:
    """A TF1 checkpoint given by its prefix (`.../albert_model.ckpt`).

    Args:
      prefix: the path without `.index` / `.data-*` suffixes.
    """

    def __init__(self, prefix: str | Path):
        import tensorflow as tf

        self.source = str(prefix)
        try:
            self._reader = tf.train.load_checkpoint(self.source)
            self.shapes = {k: tuple(v) for k, v in self._reader.get_variable_to_shape_map().items()}
        except Exception as err:  # TF raises DataLossError, NotFoundError, OpError ...
            raise CheckpointError(
                f"TF1 checkpoint {self.source} cannot be read (truncated or corrupt "
                f"{self.source}.index / .data-* files?): {_first_line(err)}"
            ) from None

    def get(self, name: str) -> np.ndarray:
        try:
            return np.asarray(self._reader.get_tensor(name))
        except Exception as err:
            raise CheckpointError(
                f"variable {name} of TF1 checkpoint {self.source} cannot be read (truncated "
                f"or corrupt .data-* file?): {_first_line(err)}"
            ) from None


class SafetensorsReader:
    """One `model.safetensors` file, or a sharded set given by `model.safetensors.index.json`."""

    def __init__(self, path: str | Path):
        from safetensors import safe_open

        path = Path(path)
        self.source = str(path)
        if path.name.endswith(".index.json"):
            try:
                weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
            except (ValueError, KeyError) as err:
                raise CheckpointError(f"{path} is not a safetensors index (need a 'weight_map'): {err}") from None
            files = sorted({path.parent / f for f in weight_map.values()})
        else:
            files = [path]
        self._handles, self._where, self.shapes = {}, {}, {}
        for file in files:
            try:
                handle = safe_open(str(file), framework="np")
                for key in handle.keys():
                    self.shapes[key] = tuple(handle.get_slice(key).get_shape())
                    self._where[key] = file
            except Exception as err:  # SafetensorError on a truncated header or data
                raise CheckpointError(
                    f"safetensors file {file} cannot be read (truncated or corrupt?): {_first_line(err)}"
                ) from None
            self._handles[file] = handle

    def get(self, name: str) -> np.ndarray:
        handle = self._handles[self._where[name]]
        try:
            return handle.get_tensor(name)
        except TypeError:  # bfloat16 has no NumPy dtype: go through torch when it is there
            from safetensors import safe_open

            with safe_open(str(self._where[name]), framework="pt") as pt:
                return pt.get_tensor(name).float().numpy()
        except Exception as err:
            raise CheckpointError(f"tensor {name} of {self._where[name]} cannot be read: {_first_line(err)}") from None


class TorchBinReader:
    """A `pytorch_model.bin` state dict (needs torch; loaded with `weights_only=True`)."""

    def __init__(self, path: str | Path):
        self.source = str(path)
        try:
            import torch
        except ImportError:
            raise CheckpointError(
                f"{path} is a PyTorch file and reading it needs torch (pip install torch), "
                "or convert it to model.safetensors"
            ) from None
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as err:
            raise CheckpointError(f"{path} cannot be read as a PyTorch state dict (truncated or corrupt?): {_first_line(err)}") from None
        if not isinstance(state, dict):
            raise CheckpointError(f"{path} holds a {type(state).__name__}, expected a state dict of tensors")
        # Old BERT ports name LayerNorm weights gamma/beta; Hugging Face renames them on load.
        self._state = {_modern_hf_name(k): v for k, v in state.items() if hasattr(v, "shape")}
        self.shapes = {k: tuple(v.shape) for k, v in self._state.items()}

    def get(self, name: str) -> np.ndarray:
        return self._state[name].detach().float().numpy()


def _modern_hf_name(name: str) -> str:
    if name.endswith(".gamma"):
        return name[: -len(".gamma")] + ".weight"
    if name.endswith(".beta"):
        return name[: -len(".beta")] + ".bias"
    return name


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
