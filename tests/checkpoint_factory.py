"""Writes small checkpoints in each vendor's exact layout, for tests/test_checkpoints.py.

TF1 checkpoints go through `tf.compat.v1.train.Saver` with variables named as the vendor's
code names them, plus the extras a pretraining checkpoint carries (Adam slots, `cls/*` heads,
pooler, `global_step`). Google-layout checkpoints are written from the weights of a
Hugging Face model through a name mapping kept *here*, separate from the library's, so the
test compares two independent mappings and HF's own forward pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SPECIALS = ["[PAD]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_vocab(path: Path, size: int) -> Path:
    """A vocab.txt of exactly `size` lines: BERT specials, then CJK characters."""
    tokens = SPECIALS + [chr(0x4E00 + i) for i in range(size - len(SPECIALS))]
    path.write_text("\n".join(tokens[:size]) + "\n", encoding="utf-8")
    return path


def write_tf1_checkpoint(prefix: Path, tensors: dict[str, np.ndarray]) -> Path:
    """Saves `tensors` as a TF1 checkpoint at `prefix` (files prefix.index, prefix.data-*)."""
    import tensorflow as tf

    with tf.Graph().as_default():
        variables = [tf.compat.v1.Variable(value, name=name) for name, value in tensors.items()]
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(prefix), write_meta_graph=False, write_state=False)
    return prefix


def pretraining_extras(tensors: dict[str, np.ndarray], hidden: int, vocab: int, width: int) -> dict:
    """The extras of a pretraining checkpoint: Adam slots for every weight, MLM/SOP heads,
    pooler and global_step (all must be ignored by the loader)."""
    rng = np.random.default_rng(1)
    extras = {}
    for name, value in tensors.items():
        extras[name + "/adam_m"] = np.zeros_like(value)
        extras[name + "/adam_v"] = np.zeros_like(value)
    extras["bert/pooler/dense/kernel"] = rng.normal(size=(hidden, hidden)).astype(np.float32)
    extras["bert/pooler/dense/bias"] = np.zeros(hidden, np.float32)
    extras["cls/predictions/transform/dense/kernel"] = rng.normal(size=(hidden, width)).astype(np.float32)
    extras["cls/predictions/transform/LayerNorm/gamma"] = np.ones(width, np.float32)
    extras["cls/predictions/output_bias"] = np.zeros(vocab, np.float32)
    extras["cls/seq_relationship/output_weights"] = rng.normal(size=(2, hidden)).astype(np.float32)
    extras["global_step"] = np.array(36000, np.int64)
    return extras


def brightmart_tensors(rng, vocab: int, emb: int, hidden: int, inter: int, scale: float = 0.3) -> dict:
    """Random weights named as albert_zh's modeling.py names them (post- and pre-LN alike)."""

    def normal(*shape):
        return (rng.normal(size=shape) * scale).astype(np.float32)

    def norm(width):
        return (1.0 + rng.normal(size=width) * 0.1).astype(np.float32), normal(width)

    t = {
        "bert/embeddings/word_embeddings": normal(vocab, emb),
        "bert/embeddings/word_embeddings_2": normal(emb, hidden),
        "bert/embeddings/token_type_embeddings": normal(2, hidden),
        "bert/embeddings/position_embeddings": normal(512, hidden),
    }
    t["bert/embeddings/LayerNorm/gamma"], t["bert/embeddings/LayerNorm/beta"] = norm(hidden)
    block = "bert/encoder/layer_shared/"
    for sub, (n_in, n_out) in {
        "attention/self/query": (hidden, hidden),
        "attention/self/key": (hidden, hidden),
        "attention/self/value": (hidden, hidden),
        "attention/output/dense": (hidden, hidden),
        "intermediate/dense": (hidden, inter),
        "output/dense": (inter, hidden),
    }.items():
        t[block + sub + "/kernel"] = normal(n_in, n_out)
        t[block + sub + "/bias"] = normal(n_out)
    for sub in ("attention/output/LayerNorm", "output/LayerNorm"):
        t[block + sub + "/gamma"], t[block + sub + "/beta"] = norm(hidden)
    return t


def randomize_torch_model(model, seed: int, scale: float = 0.3) -> None:
    """Replaces HF's init (LayerNorm 1/0, tiny normals) by random values everywhere, so a
    swapped or untransposed weight cannot hide."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            if "LayerNorm.weight" in name or "layer_norm.weight" in name:
                param.copy_(1.0 + 0.1 * noise)
            else:
                param.copy_(scale * noise)


# Our own (test-side) map from Hugging Face names to Google's TF1 names.
_HF_TO_TF1_ALBERT_BLOCK = {
    "attention.query": "attention_1/self/query",
    "attention.key": "attention_1/self/key",
    "attention.value": "attention_1/self/value",
    "attention.dense": "attention_1/output/dense",
    "attention.LayerNorm": "LayerNorm",
    "ffn": "ffn_1/intermediate/dense",
    "ffn_output": "ffn_1/intermediate/output/dense",
    "full_layer_layer_norm": "LayerNorm_1",
}
_HF_TO_TF1_BERT_BLOCK = {
    "attention.self.query": "attention/self/query",
    "attention.self.key": "attention/self/key",
    "attention.self.value": "attention/self/value",
    "attention.output.dense": "attention/output/dense",
    "attention.output.LayerNorm": "attention/output/LayerNorm",
    "intermediate.dense": "intermediate/dense",
    "output.dense": "output/dense",
    "output.LayerNorm": "output/LayerNorm",
}


def hf_state_to_google_tf1(state: dict, albert: bool) -> dict[str, np.ndarray]:
    """HF AlbertModel/BertModel state dict (no prefix) -> Google TF1 variable dict."""
    out = {}
    for key, tensor in state.items():
        value = tensor.detach().numpy().astype(np.float32)
        parts = key.split(".")
        leaf = parts[-1]
        if key.startswith("embeddings."):
            if parts[1] in ("position_ids", "token_type_ids"):
                continue
            if parts[1] == "LayerNorm":
                out["bert/embeddings/LayerNorm/" + {"weight": "gamma", "bias": "beta"}[leaf]] = value
            else:
                out["bert/embeddings/" + parts[1]] = value
            continue
        if key.startswith("pooler."):
            tf_leaf = "kernel" if leaf == "weight" else "bias"
            out["bert/pooler/dense/" + tf_leaf] = value.T if leaf == "weight" else value
            continue
        if key.startswith("encoder.embedding_hidden_mapping_in."):
            out["bert/encoder/embedding_hidden_mapping_in/" + ("kernel" if leaf == "weight" else "bias")] = (
                value.T if leaf == "weight" else value
            )
            continue
        if albert:
            sub = ".".join(parts[5:-1])  # encoder.albert_layer_groups.0.albert_layers.0.<sub>.<leaf>
            scope = "bert/encoder/transformer/group_0/inner_group_0/" + _HF_TO_TF1_ALBERT_BLOCK[sub]
        else:
            sub = ".".join(parts[3:-1])  # encoder.layer.<i>.<sub>.<leaf>
            scope = f"bert/encoder/layer_{parts[2]}/" + _HF_TO_TF1_BERT_BLOCK[sub]
        is_norm = scope.endswith("LayerNorm") or scope.endswith("LayerNorm_1")
        if is_norm:
            out[scope + "/" + {"weight": "gamma", "bias": "beta"}[leaf]] = value
        else:
            out[scope + "/" + ("kernel" if leaf == "weight" else "bias")] = value.T if leaf == "weight" else value
    return out


def write_json(path: Path, values: dict) -> Path:
    path.write_text(json.dumps(values, indent=2), encoding="utf-8")
    return path
