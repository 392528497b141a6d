"""Our own encoder directory (layout "albert-ner"), written by `albert-ner pretrain`.

  DIR/
    encoder_config.json   every EncoderConfig field, ours included (model_type,
                          embedding_layout, ln_type, gelu_approximate), so nothing is guessed
    encoder_weights.npz   the encoder's weights under their slot names
                          (`layouts.encoder_variables`: "embeddings/word_embeddings",
                          "block_0/query/kernel", ...), plus the masked-LM head under "mlm/*"
                          and the bigram/BiLSTM layers under "bigrams/*", "bilstm/*"
    stack_options.json    only with those layers: {"lstm_units", "bigram_buckets",
                          "bigram_size"}, so `train` rebuilds the same stack
    vocab.txt             the vocabulary the embedding rows belong to

Why not write a vendor layout: an encoder that started from a Hugging Face checkpoint uses the
exact (erf) GELU, which no TF1 config can express, and a google-layout ALBERT is not a
brightmart one. Slot names and the full config round-trip every encoder exactly.
`resolve_pretrained` recognises the directory, so `train --init-checkpoint DIR` and
`pretrain --init-checkpoint DIR` (continued pretraining, head included) both take it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from albert_ner.checkpoints import layouts
from albert_ner.checkpoints.readers import CheckpointError

CONFIG_FILE = "encoder_config.json"
WEIGHTS_FILE = "encoder_weights.npz"
STACK_FILE = "stack_options.json"


def is_encoder_dir(directory: Path) -> bool:
    """True when `directory` holds an albert-ner encoder (its weights file)."""
    return (Path(directory) / WEIGHTS_FILE).is_file()


def write_encoder_dir(directory: str | os.PathLike, encoder, vocab, mlm_head=None,
                      bigrams=None, lstm=None) -> Path:
    """Writes config, weights (and head) and vocabulary of a built encoder into `directory`.

    Args:
      directory: created if needed; existing files of the layout are replaced atomically.
      encoder: a built `model.encoder.Encoder` or `model.sequence.CharEmbeddingEncoder`.
      vocab: the `text.vocab.Vocab` its embedding rows belong to.
      mlm_head: a built `model.mlm.MaskedLMHead` to keep (continued pretraining), or None.
      bigrams, lstm: the built bigram and BiLSTM layers above the encoder, or None.
    Returns:
      the directory.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {slot: np.asarray(v.numpy()) for slot, v in layouts.encoder_variables(encoder).items()}
    arrays.update({slot: np.asarray(v.numpy()) for slot, v in layouts.stack_variables(bigrams, lstm).items()})
    if mlm_head is not None:
        arrays.update({slot: np.asarray(v.numpy()) for slot, v in layouts.mlm_head_variables(mlm_head).items()})
    tmp = directory / (WEIGHTS_FILE + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, directory / WEIGHTS_FILE)
    config = encoder.config.to_dict()
    tmp = directory / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, directory / CONFIG_FILE)
    stack = {
        "lstm_units": lstm.units if lstm is not None else 0,
        "bigram_buckets": bigrams.buckets if bigrams is not None else 0,
        "bigram_size": bigrams.width if bigrams is not None else 0,
    }
    if any(stack.values()):
        (directory / STACK_FILE).write_text(json.dumps(stack, indent=2) + "\n", encoding="utf-8")
    elif (directory / STACK_FILE).exists():
        (directory / STACK_FILE).unlink()
    vocab.save(directory / "vocab.txt")
    return directory


def read_stack_options(directory: str | os.PathLike) -> dict:
    """The bigram/BiLSTM options an encoder directory was written with ({} when none)."""
    path = Path(directory) / STACK_FILE
    if not path.is_file():
        return {}
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    wanted = ("lstm_units", "bigram_buckets", "bigram_size")
    if sorted(values) != sorted(wanted) or not all(isinstance(values[k], int) and values[k] >= 0 for k in wanted):
        raise CheckpointError(f"{path} must hold non-negative integers {', '.join(wanted)}, got {values}")
    return values


class NpzReader:
    """The weights of an albert-ner encoder directory (`shapes`, `get(name)`)."""

    def __init__(self, path: str | os.PathLike):
        self.source = str(path)
        try:
            with np.load(path) as data:
                self._arrays = {name: data[name] for name in data.files}
        except Exception as err:  # BadZipFile, ValueError, EOFError on a truncated file
            raise CheckpointError(f"{path} cannot be read as an albert-ner weights file (truncated or corrupt?): {err}") from None
        self.shapes = {name: tuple(a.shape) for name, a in self._arrays.items()}

    def get(self, name: str) -> np.ndarray:
        return self._arrays[name]
