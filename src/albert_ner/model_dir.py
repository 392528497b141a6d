"""The model directory: the one artefact that training writes and everything else reads.

  MODEL_DIR/
    1/                    SavedModel (signatures: raw strings in, char ids in)
    labels.json           tag scheme, entity types and tag list (TagSet.to_json)
    vocab.txt             the vocabulary the ids refer to
    model_config.json     {"encoder": EncoderConfig fields, "head", "max_seq_length",
                           "lstm_units", "bigram_buckets", "bigram_size",
                           "lexicon_size", "lexicon_max_len", "lexicon_classes",
                           "lexicon_profile", "trained_vocab_size", "unk_dropout",
                           "members", "known_bigrams", ...}
    weights.npz           the best weights (by dev entity F1), for evaluation and fine-tuning
    training_args.json    every option of the run, to reproduce it
    metrics.jsonl         one JSON object per evaluation; final_metrics.json: the last one
    checkpoints/          resumable training state (optional)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from albert_ner.data.schemes import TagSet
from albert_ner.durable_io import npz_bytes, replacing, write_bytes
from albert_ner.model.config import EncoderConfig
from albert_ner.text.tokenizer import CharTokenizer
from albert_ner.text.vocab import Vocab

SAVED_MODEL_VERSION = "1"


def write_json(path: Path, value) -> None:
    """Writes JSON atomically and durably: a killed process never leaves half a file, a full
    disk raises `DiskFullError` and leaves the previous file (see `durable_io.replacing`)."""
    write_bytes(path, (json.dumps(value, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))


class ModelDir:
    """Paths and readers for one model directory."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    labels = property(lambda self: self.path / "labels.json")
    vocab = property(lambda self: self.path / "vocab.txt")
    config = property(lambda self: self.path / "model_config.json")
    weights = property(lambda self: self.path / "weights.npz")
    training_args = property(lambda self: self.path / "training_args.json")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    final_metrics = property(lambda self: self.path / "final_metrics.json")
    checkpoints = property(lambda self: self.path / "checkpoints")
    saved_model = property(lambda self: self.path / SAVED_MODEL_VERSION)

    def require(self, *paths: Path) -> None:
        """Raises a clear error when the directory lacks what a command needs."""
        missing = [p.name for p in paths if not p.exists()]
        if missing:
            raise FileNotFoundError(
                f"{self.path} is not a complete model directory: missing {', '.join(missing)} "
                "(train one with `albert-ner train --output-dir DIR`)"
            )

    def load_tagset(self) -> TagSet:
        self.require(self.labels)
        return TagSet.from_json(json.loads(self.labels.read_text(encoding="utf-8")))

    def load_tokenizer(self) -> CharTokenizer:
        self.require(self.vocab)
        return CharTokenizer(Vocab.load(self.vocab))

    def load_model_config(self) -> dict:
        self.require(self.config)
        return json.loads(self.config.read_text(encoding="utf-8"))

    def tagger_options(self) -> dict:
        """`Tagger` keyword arguments besides the encoder config and tag count.

        Model directories written before the BiLSTM/bigram/lexicon options lack those keys: 0 = off.
        """
        config = self.load_model_config()
        return {
            "head": config["head"],
            "classifier_dropout": config.get("classifier_dropout", 0.1),
            "lstm_units": config.get("lstm_units", 0),
            "bigram_buckets": config.get("bigram_buckets", 0),
            "bigram_size": config.get("bigram_size", 0),
            "lexicon_size": config.get("lexicon_size", 0),
            "lexicon_max_len": config.get("lexicon_max_len", 0),
            "lexicon_classes": tuple(config.get("lexicon_classes", ())),
            "lexicon_profile": config.get("lexicon_profile", False),
            "trained_vocab_size": config.get("trained_vocab_size", 0),
            "unk_dropout": config.get("unk_dropout", 0.0),
            "members": config.get("members", 1),
            "known_bigrams": config.get("known_bigrams", 0),
        }

    def encoder_config(self) -> EncoderConfig:
        return EncoderConfig.from_dict(self.load_model_config()["encoder"], source=str(self.config))

    def read_metrics(self) -> list[dict]:
        if not self.metrics.exists():
            return []
        lines = self.metrics.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]


def weight_arrays(model) -> dict[str, np.ndarray]:
    """The arrays `save_weights` writes: every variable by position, and their names."""
    arrays = {"__names__": np.asarray([v.path for v in model.variables])}
    arrays.update({f"{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(model.variables)})
    return arrays


def save_weights(model, path: Path) -> None:
    """All model variables (incl. dropout RNG state), by position and name, atomically and
    durably; a full disk raises `DiskFullError` and leaves the previous file."""
    arrays = weight_arrays(model)
    with replacing(path, npz_bytes(arrays.values())) as tmp:
        np.savez(tmp, **arrays)


def read_weights(model, path: Path) -> list[np.ndarray]:
    """Reads and checks `save_weights` output against a model, assigning nothing.

    Returns:
      one array per `model.variables` entry, in order, each of the variable's shape.
    Raises:
      ValueError: the file holds another number of variables or another shape.
      OSError, zipfile.BadZipFile, EOFError, KeyError: the file is missing or damaged.
    """
    with np.load(path) as data:
        names = list(data["__names__"])
        if len(names) != len(model.variables):
            raise ValueError(
                f"{path}: holds {len(names)} variables, the model has {len(model.variables)} "
                "(was it trained with another config?)"
            )
        values = [data[f"{i:04d}"] for i in range(len(names))]  # reads (and CRC-checks) all
    for name, value, var in zip(names, values, model.variables):
        if tuple(value.shape) != tuple(var.shape):
            raise ValueError(
                f"{path}: variable {name} has shape {value.shape}, "
                f"the model expects {tuple(var.shape)}"
            )
    return values


def load_weights(model, path: Path) -> None:
    """Restores `save_weights` output into a model built with the same config.

    The whole file is read and checked first: a bad file changes no variable.
    """
    for var, value in zip(model.variables, read_weights(model, path)):
        var.assign(value)
