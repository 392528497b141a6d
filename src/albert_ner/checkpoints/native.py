"""Our own encoder directory (layout "albert-ner"), written by `albert-ner pretrain`.

  DIR/
    encoder_config.json   every EncoderConfig field, ours included (model_type,
                          embedding_layout, ln_type, gelu_approximate), so nothing is guessed
    encoder_weights.npz   the encoder's weights under their slot names
                          (`layouts.encoder_variables`: "embeddings/word_embeddings",
                          "block_0/query/kernel", ...), plus the masked-LM head under "mlm/*"
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


def is_encoder_dir(directory: Path) -> bool:
    """True when `directory` holds an albert-ner encoder (its weights file)."""
    return (Path(directory) / WEIGHTS_FILE).is_file()


def write_encoder_dir(directory: str | os.PathLike, encoder, vocab, mlm_head=None) -> Path:
    """Writes config, weights (and head) and vocabulary of a built encoder into `directory`.

    Args:
      directory: created if needed; existing files of the layout are replaced atomically.
      encoder: a built `model.encoder.Encoder`.
      vocab: the `text.vocab.Vocab` its embedding rows belong to.
      mlm_head: a built `model.mlm.MaskedLMHead` to keep (continued pretraining), or None.
    Returns:
      the directory.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {slot: np.asarray(v.numpy()) for slot, v in layouts.encoder_variables(encoder).items()}
    if mlm_head is not None:
        arrays.update({slot: np.asarray(v.numpy()) for slot, v in layouts.mlm_head_variables(mlm_head).items()})
    tmp = directory / (WEIGHTS_FILE + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, directory / WEIGHTS_FILE)
    config = encoder.config.to_dict()
    tmp = directory / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, directory / CONFIG_FILE)
    vocab.save(directory / "vocab.txt")
    return directory


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
