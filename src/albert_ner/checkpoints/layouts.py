"""Checkpoint layouts: recognise one from its variable names, and map its names onto `Encoder`.

Five layouts are known (see FACTS.md "Checkpoint layouts"):

  brightmart     albert_zh's own checkpoints: `bert/embeddings/word_embeddings [V,E]` then
                 `word_embeddings_2 [E,H]` (no bias) right after the lookup; position/type
                 embeddings and LayerNorm at H; one shared `bert/encoder/layer_shared/` block
                 with BERT's sub-names. Post-LN or pre-LN (config `ln_type`): the variables
                 are the same, only the JSON tells them apart.
  google-albert  Google's ALBERT code (brightmart `*_google_zh`): embeddings and their
                 LayerNorm at E, `bert/encoder/embedding_hidden_mapping_in`, one block under
                 `bert/encoder/transformer/group_0/inner_group_0/`.
  google-bert    Google BERT: `bert/encoder/layer_{i}/`, no factorisation.
  hf-albert      Hugging Face `AlbertModel` state dicts (`albert.` prefix optional).
  hf-bert        Hugging Face `BertModel` state dicts (`bert.` prefix optional).
  albert-ner     our own encoder directory (`albert-ner pretrain` output, see `native`):
                 weights stored under the slot names below, the full EncoderConfig beside.

Everything is keyed by *slots*: our own names for the encoder's weights
("embeddings/norm/gamma", "block_0/query/kernel", ...). `encoder_variables` gives slot → Keras
variable, `checkpoint_names` gives slot → (checkpoint name, transpose?) for a layout, and the
loader joins the two. TF1 kernels are [in, out] like Keras Dense; Hugging Face `Linear`
weights are [out, in] and are transposed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

LAYOUTS = ("brightmart", "google-albert", "google-bert", "hf-albert", "hf-bert", "albert-ner")

# EncoderConfig fields that the layout decides (the JSON files leave them implicit).
LAYOUT_FIELDS = {
    "brightmart": {"model_type": "albert", "embedding_layout": "brightmart"},
    "google-albert": {"model_type": "albert", "embedding_layout": "google", "ln_type": "postln"},
    "google-bert": {"model_type": "bert", "embedding_layout": "google", "ln_type": "postln"},
    "hf-albert": {"model_type": "albert", "embedding_layout": "google", "ln_type": "postln"},
    "hf-bert": {"model_type": "bert", "embedding_layout": "google", "ln_type": "postln"},
    "albert-ner": {},  # its encoder_config.json holds every field
}

# Sub-layers of a `TransformerBlock`, in the order the loading report lists them.
_DENSES = ("query", "key", "value", "attention_output", "intermediate", "output_dense")
_NORMS = ("attention_norm", "output_norm")

# Block sub-names per family: slot layer -> checkpoint sub-scope.
_TF1_BERT_BLOCK = {
    "query": "attention/self/query",
    "key": "attention/self/key",
    "value": "attention/self/value",
    "attention_output": "attention/output/dense",
    # Pre-LN albert_zh computes its attention pre-norm inside `attention/output` too, so the
    # same name serves both ln_types.
    "attention_norm": "attention/output/LayerNorm",
    "intermediate": "intermediate/dense",
    "output_dense": "output/dense",
    "output_norm": "output/LayerNorm",
}
_TF1_ALBERT_BLOCK = {
    "query": "attention_1/self/query",
    "key": "attention_1/self/key",
    "value": "attention_1/self/value",
    "attention_output": "attention_1/output/dense",
    "attention_norm": "LayerNorm",
    "intermediate": "ffn_1/intermediate/dense",
    "output_dense": "ffn_1/intermediate/output/dense",
    "output_norm": "LayerNorm_1",
}
_HF_BERT_BLOCK = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attention_output": "attention.output.dense",
    "attention_norm": "attention.output.LayerNorm",
    "intermediate": "intermediate.dense",
    "output_dense": "output.dense",
    "output_norm": "output.LayerNorm",
}
_HF_ALBERT_BLOCK = {
    "query": "attention.query",
    "key": "attention.key",
    "value": "attention.value",
    "attention_output": "attention.dense",
    "attention_norm": "attention.LayerNorm",
    "intermediate": "ffn",
    "output_dense": "ffn_output",
    "output_norm": "full_layer_layer_norm",
}


def encoder_variables(encoder) -> dict[str, object]:
    """Slot name -> Keras variable for every weight of a built `Encoder`.

    Args:
      encoder: an `albert_ner.model.encoder.Encoder` whose variables exist.
    Returns:
      an insertion-ordered dict (embeddings first, then blocks).
    """
    if encoder.config.model_type == "chars":  # a bare character embedding table
        return {"embeddings/word_embeddings": encoder.word_embeddings.embeddings}  # [V, H]
    emb = encoder.embeddings
    slots = {"embeddings/word_embeddings": emb.word_embeddings.embeddings}  # [V, E or H]
    if emb.projection is not None:
        slots["embeddings/projection/kernel"] = emb.projection.kernel  # [E, H]
        if emb.projection.use_bias:
            slots["embeddings/projection/bias"] = emb.projection.bias  # [H]
    slots["embeddings/position_embeddings"] = emb.position_embeddings.embeddings  # [P, width]
    slots["embeddings/token_type_embeddings"] = emb.token_type_embeddings.embeddings  # [2, width]
    slots["embeddings/norm/gamma"] = emb.norm.gamma
    slots["embeddings/norm/beta"] = emb.norm.beta
    for i, block in enumerate(encoder.blocks):
        for name in _DENSES:
            layer = getattr(block, name)
            slots[f"block_{i}/{name}/kernel"] = layer.kernel  # [in, out]
            slots[f"block_{i}/{name}/bias"] = layer.bias
        for name in _NORMS:
            layer = getattr(block, name)
            slots[f"block_{i}/{name}/gamma"] = layer.gamma
            slots[f"block_{i}/{name}/beta"] = layer.beta
    return slots


def stack_variables(bigrams=None, lstm=None) -> dict[str, object]:
    """Slot name -> Keras variable for the optional layers between encoder and head.

    Args:
      bigrams: a built `model.sequence.BigramEmbedding`, or None.
      lstm: a built `model.sequence.BiLSTM`, or None.
    """
    slots = {}
    if bigrams is not None:
        slots["bigrams/embeddings"] = bigrams.table.embeddings  # [buckets, width]
    if lstm is not None:
        for direction in ("forward", "backward"):
            cell = getattr(lstm, f"{direction}_lstm").cell
            slots[f"bilstm/{direction}/kernel"] = cell.kernel  # [in, 4 units]
            slots[f"bilstm/{direction}/recurrent_kernel"] = cell.recurrent_kernel  # [units, 4 units]
            slots[f"bilstm/{direction}/bias"] = cell.bias  # [4 units]
    return slots


def mlm_head_variables(head) -> dict[str, object]:
    """Slot name -> Keras variable for a built `model.mlm.MaskedLMHead`."""
    return {
        "mlm/transform/kernel": head.transform.kernel,  # [H, H or E]
        "mlm/transform/bias": head.transform.bias,
        "mlm/norm/gamma": head.norm.gamma,
        "mlm/norm/beta": head.norm.beta,
        "mlm/output_bias": head.output_bias,  # [V]
    }


def mlm_head_names(layout: str, names: Iterable[str] = ()) -> dict[str, tuple[str, bool]]:
    """Slot -> (checkpoint name, transpose) of the vendor's pretraining MLM head.

    TF1 checkpoints (brightmart, Google) keep it under `cls/predictions/`, Hugging Face under
    `predictions.` (ALBERT) or `cls.predictions.` (BERT); the decoder matrix itself is tied
    to the word embeddings everywhere, so only transform, LayerNorm and bias are stored.
    """
    if layout == "albert-ner":
        return {slot: (slot, False) for slot in ("mlm/transform/kernel", "mlm/transform/bias",
                                                  "mlm/norm/gamma", "mlm/norm/beta", "mlm/output_bias")}
    if layout.startswith("hf-"):
        names = list(names)
        if layout == "hf-albert":
            scope, bias = "predictions.", "predictions.bias"
            transform, norm = scope + "dense.", scope + "LayerNorm."
        else:
            scope, bias = "cls.predictions.", "cls.predictions.bias"
            transform, norm = scope + "transform.dense.", scope + "transform.LayerNorm."
        return {
            "mlm/transform/kernel": (transform + "weight", True),
            "mlm/transform/bias": (transform + "bias", False),
            "mlm/norm/gamma": (norm + "weight", False),
            "mlm/norm/beta": (norm + "bias", False),
            "mlm/output_bias": (bias, False),
        }
    return {
        "mlm/transform/kernel": ("cls/predictions/transform/dense/kernel", False),
        "mlm/transform/bias": ("cls/predictions/transform/dense/bias", False),
        "mlm/norm/gamma": ("cls/predictions/transform/LayerNorm/gamma", False),
        "mlm/norm/beta": ("cls/predictions/transform/LayerNorm/beta", False),
        "mlm/output_bias": ("cls/predictions/output_bias", False),
    }


def hf_prefix(names: Iterable[str]) -> str:
    """The prefix before `embeddings.word_embeddings.weight` ("albert.", "bert." or "")."""
    for name in names:
        if name.endswith("embeddings.word_embeddings.weight"):
            return name[: -len("embeddings.word_embeddings.weight")]
    return ""


def checkpoint_names(layout: str, slots: Iterable[str], names: Iterable[str] = ()) -> dict:
    """Slot -> (checkpoint variable name, transpose) for the given layout.

    Args:
      layout: one of LAYOUTS.
      slots: the slot names to map (from `encoder_variables`).
      names: the checkpoint's variable names (only used to find a Hugging Face prefix).
    Returns:
      {slot: (name, transpose)}; `transpose` is True for Hugging Face Linear weights.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"checkpoint layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    result = {}
    if layout == "albert-ner":
        return {slot: (slot, False) for slot in slots}
    if layout.startswith("hf-"):
        prefix = hf_prefix(names)
        for slot in slots:
            result[slot] = _hf_name(layout, slot, prefix)
    else:
        for slot in slots:
            result[slot] = (_tf1_name(layout, slot), False)
    return result


def _tf1_name(layout: str, slot: str) -> str:
    part, _, rest = slot.partition("/")
    if part == "embeddings":
        if rest == "projection/kernel":
            return ("bert/embeddings/word_embeddings_2" if layout == "brightmart"
                    else "bert/encoder/embedding_hidden_mapping_in/kernel")
        if rest == "projection/bias":
            return "bert/encoder/embedding_hidden_mapping_in/bias"
        if rest.startswith("norm/"):
            return "bert/embeddings/LayerNorm/" + rest.split("/")[1]
        return "bert/embeddings/" + rest
    index = int(part.split("_")[1])
    layer, leaf = rest.split("/")
    if layout == "brightmart":
        scope, table = "bert/encoder/layer_shared/", _TF1_BERT_BLOCK
    elif layout == "google-albert":
        scope, table = "bert/encoder/transformer/group_0/inner_group_0/", _TF1_ALBERT_BLOCK
    else:
        scope, table = f"bert/encoder/layer_{index}/", _TF1_BERT_BLOCK
    return scope + table[layer] + "/" + leaf


def _hf_name(layout: str, slot: str, prefix: str) -> tuple[str, bool]:
    part, _, rest = slot.partition("/")
    hf_leaf = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}
    if part == "embeddings":
        if rest.startswith("projection/"):
            leaf = rest.split("/")[1]
            return prefix + "encoder.embedding_hidden_mapping_in." + hf_leaf[leaf], leaf == "kernel"
        if rest.startswith("norm/"):
            return prefix + "embeddings.LayerNorm." + hf_leaf[rest.split("/")[1]], False
        return prefix + f"embeddings.{rest}.weight", False
    index = int(part.split("_")[1])
    layer, leaf = rest.split("/")
    if layout == "hf-albert":
        scope, table = "encoder.albert_layer_groups.0.albert_layers.0.", _HF_ALBERT_BLOCK
    else:
        scope, table = f"encoder.layer.{index}.", _HF_BERT_BLOCK
    return prefix + scope + table[layer] + "." + hf_leaf[leaf], leaf == "kernel"


def detect_layout(shapes: Mapping[str, tuple]) -> str | None:
    """Names the layout of a checkpoint from its variable names (None when unrecognised).

    Args:
      shapes: variable name -> shape, as the reader lists them.
    """
    names = list(shapes)
    if "embeddings/word_embeddings" in shapes:
        return "albert-ner"
    if any("." in n and "/" not in n for n in names if n.endswith(".weight")):
        if any(".albert_layer_groups." in n for n in names):
            return "hf-albert"
        if any(re.search(r"(^|\.)encoder\.layer\.\d+\.", n) for n in names):
            return "hf-bert"
        return None
    if "bert/embeddings/word_embeddings_2" in shapes:
        return "brightmart"
    if any(n.startswith("bert/encoder/transformer/group_") for n in names):
        return "google-albert"
    if any(re.match(r"bert/encoder/layer_\d+/", n) for n in names):
        return "google-bert"
    return None


# Variables a pretraining checkpoint carries that fine-tuning does not use, by category.
_IGNORED = (
    ("optimizer slots", re.compile(r".*/(adam_[mv]|lamb_[mv]|Adam(_1)?|Momentum)$")),
    ("pretraining heads", re.compile(r"^(mlm/|cls/|predictions\.|sop_classifier\.|cls\.|"
                                     r"(albert|bert)\.(predictions|sop_classifier)\.)")),
    ("pooler", re.compile(r"^(bert/pooler/|((albert|bert)\.)?pooler[./])")),
    ("training state", re.compile(r"^(global_step|good_steps|loss_scale|current_loss_scale)$")),
    ("buffers", re.compile(r".*embeddings\.(position_ids|token_type_ids)$")),
    # The no-transformer stack's bigrams and BiLSTM (`stack_variables`): not encoder weights;
    # `Pretrained.load_stack_into` loads them into the tagger's own layers.
    ("bigram/BiLSTM layers (loaded after the encoder)", re.compile(r"^(bigrams|bilstm)/")),
)


def ignored_category(name: str) -> str | None:
    """The reason a checkpoint variable is skipped (None: it is not a known extra)."""
    for category, pattern in _IGNORED:
        if pattern.match(name):
            return category
    return None


def in_encoder_scope(layout: str, name: str, prefix: str = "") -> bool:
    """True when a variable belongs to the encoder (so leaving it unused is an error)."""
    if layout == "albert-ner":
        return name.startswith("embeddings/") or name.startswith("block_")
    if layout.startswith("hf-"):
        return name.startswith(prefix + "embeddings.") or name.startswith(prefix + "encoder.")
    return name.startswith("bert/embeddings/") or name.startswith("bert/encoder/")


def abbreviate(names: Iterable[str], limit: int = 12) -> str:
    """Short listing of variable names for the loading report.

    Layer indices fold into ranges ("layer_{0..11}"), siblings into braces
    ("query/{kernel,bias}", then "self/{query,key,value}/{kernel,bias}"); at most `limit`
    entries are shown.
    """
    folded: dict[str, list[int]] = {}
    for name in names:
        numbers = [int(m) for m in re.findall(r"(?<=layer_)\d+|(?<=layer\.)\d+", name)]
        key = re.sub(r"(?<=layer_)\d+|(?<=layer\.)\d+", "#", name)
        folded.setdefault(key, []).extend(numbers)
    patterns = []
    for key, numbers in folded.items():
        if numbers:
            lo, hi = min(numbers), max(numbers)
            key = key.replace("#", str(lo) if lo == hi else f"{{{lo}..{hi}}}")
        patterns.append(key)
    # Two rounds of sibling folding: leaves first, then parents that share the same leaves.
    # Entries are (head, tail, separator): TF1 names use "/", Hugging Face names ".".
    entries = [(p, "", "/" if "/" in p else ".") for p in patterns]
    for _ in range(2):
        groups: dict[tuple[str, str, str], list[str]] = {}
        for head, tail, sep in entries:
            if not head:  # nothing left to fold ("global_step")
                groups.setdefault(("", tail, sep), []).append("")
                continue
            parent, _, last = head.rpartition(sep)
            groups.setdefault((parent, tail, sep), []).append(last)
        entries = []
        for (parent, tail, sep), lasts in groups.items():
            if lasts == [""]:
                entries.append(("", tail, sep))
                continue
            middle = lasts[0] if len(lasts) == 1 else "{" + ",".join(lasts) + "}"
            entries.append((parent, middle + (sep + tail if tail else ""), sep))
    shown = [head + sep + tail if head else tail for head, tail, sep in entries]
    text = ", ".join(shown[:limit])
    if len(shown) > limit:
        text += f", … (+{len(shown) - limit} more)"
    return text
