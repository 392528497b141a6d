"""Encoder configuration, read from the JSON files that albert_zh and Google BERT ship.

The field names are those of `bert_config.json` / brightmart's `albert_config_*.json`, so a
vendor's config file loads unchanged. Three fields are ours, because the JSON files leave them
implicit:

  model_type         "albert" (one transformer block shared by every layer, factorised
                     embeddings), "bert" (a block per layer, no factorisation) or "chars"
                     (no transformer: a character embedding table of width hidden_size, for
                     the classic BiLSTM-CRF; see `model.sequence`).
  embedding_layout   where ALBERT's E→H projection sits. "brightmart": right after the word
                     lookup, position/type embeddings and LayerNorm at H (albert_zh's own
                     checkpoints). "google": embeddings and LayerNorm at E, then the projection
                     (`embedding_hidden_mapping_in`, Google ALBERT and Hugging Face).
  gelu_approximate   the TF1 reference code computes GELU with the tanh approximation, so a
                     TF1 config's "gelu" means that; Hugging Face's "gelu" is the exact erf form.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

# brightmart/albert_zh `albert_config_tiny.json` and `albert_config_base.json` shapes, with the
# real Chinese vocabulary size. A run that builds its own vocabulary replaces vocab_size.
PRESETS: dict[str, dict] = {
    "tiny": {
        "model_type": "albert",
        "hidden_size": 312,
        "embedding_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 12,
        "intermediate_size": 1248,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    },
    "base": {
        "model_type": "albert",
        "hidden_size": 768,
        "embedding_size": 128,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    },
    "bert-base": {
        "model_type": "bert",
        "hidden_size": 768,
        "embedding_size": None,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
    },
    # No transformer: 128-wide character embeddings for the classic (Bi)LSTM-CRF tagger.
    "chars": {
        "model_type": "chars",
        "hidden_size": 128,
        "embedding_size": None,
        "num_hidden_layers": 0,
        "num_attention_heads": 1,
        "intermediate_size": 0,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    },
    # A very small ALBERT for tests and smoke runs (seconds per hundred steps on a CPU).
    "micro": {
        "model_type": "albert",
        "hidden_size": 64,
        "embedding_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 128,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    },
}

MODEL_TYPES = ("albert", "bert", "chars")
_ACTIVATIONS = ("gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "relu", "tanh", "swish")


@dataclasses.dataclass
class EncoderConfig:
    """Shape and behaviour of an ALBERT or BERT encoder (see module docstring)."""

    vocab_size: int = 21128
    hidden_size: int = 312
    embedding_size: int | None = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 12
    intermediate_size: int = 1248
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    ln_type: str = "postln"
    model_type: str = "albert"
    embedding_layout: str = "brightmart"
    gelu_approximate: bool = True

    def __post_init__(self):
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {self.model_type!r}")
        if self.model_type == "chars":
            self.embedding_size, self.num_hidden_layers = None, 0
        if self.model_type in ("bert", "chars") or self.embedding_size in (None, self.hidden_size):
            self.embedding_size = None if self.model_type != "albert" else self.embedding_size
        if self.embedding_layout not in ("brightmart", "google"):
            raise ValueError(
                f"embedding_layout must be 'brightmart' or 'google', got {self.embedding_layout!r}"
            )
        if self.ln_type not in ("postln", "preln"):
            raise ValueError(f"ln_type must be 'postln' or 'preln', got {self.ln_type!r}")
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"hidden_act {self.hidden_act!r} is not one of {_ACTIVATIONS}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of "
                f"num_attention_heads {self.num_attention_heads}"
            )

    @property
    def factorised(self) -> bool:
        """True when word embeddings have their own width E and are projected to H."""
        return self.embedding_size is not None and self.embedding_size != self.hidden_size

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "EncoderConfig":
        """Builds a config from a vendor JSON dict; fields we do not use are ignored.

        A dict without `model_type` is ALBERT when it has `embedding_size` (every ALBERT config
        does) and BERT otherwise.
        """
        values = dict(values)
        if "layer_norm_epsilon" in values:  # Hugging Face spelling
            values.setdefault("layer_norm_eps", values["layer_norm_epsilon"])
        if "model_type" not in values:
            values["model_type"] = "albert" if "embedding_size" in values else "bert"
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in known}
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from None

    @classmethod
    def from_json_file(cls, path: str | Path) -> "EncoderConfig":
        path = Path(path)
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
        return cls.from_dict(values, source=str(path))

    @classmethod
    def resolve(cls, spec: str | Path, vocab_size: int | None = None) -> "EncoderConfig":
        """A preset name (tiny, base, bert-base, chars, micro) or a JSON file path → config."""
        spec = str(spec)
        if spec in PRESETS:
            config = cls(**PRESETS[spec])
        elif Path(spec).is_file():
            config = cls.from_json_file(spec)
        else:
            raise ValueError(
                f"--model-config {spec!r} is neither a preset ({', '.join(PRESETS)}) "
                "nor an existing JSON file"
            )
        if vocab_size is not None:
            config.vocab_size = vocab_size
        return config

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
