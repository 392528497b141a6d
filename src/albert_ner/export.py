"""Export a trained tagger as a TF SavedModel that TF Serving can run as is.

Two signatures:
  serving_default  text: string [batch] → tag_ids int32 [batch, chars], tags string
                   [batch, chars], lengths int32 [batch]. Tokenization happens in the graph:
                   UTF-8 → code points → a lookup table shipped as an asset. The table lists,
                   for every code point the Python tokenizer maps to a known id, that id, so
                   both tokenizers agree on every character while the graph uses core ops only
                   (TF Serving does not bundle tensorflow-text).
  predict_ids      char_ids int32 [batch, chars], lengths int32 [batch] → the same outputs,
                   for callers that tokenize themselves (`albert-ner predict`/`evaluate`).

Both run `Tagger.predict_tags`: overlapping windows of max_seq_length - 2 characters, blended,
and one constrained Viterbi pass over the whole sentence — long texts are never truncated.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from albert_ner.data.schemes import TagSet
from albert_ner.model_dir import ModelDir
from albert_ner.text.tokenizer import CharTokenizer

CODEPOINT_TABLE = "codepoints.tsv"


class NerServingModule(tf.Module):
    """The exported graph: a trained tagger plus its tokenizer table and tag names."""

    def __init__(self, tagger, table_file: str, tags: list[str], unk_id: int, window: int, stride: int):
        super().__init__()
        self.tagger = tagger
        self.table_asset = tf.saved_model.Asset(table_file)
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                self.table_asset,
                key_dtype=tf.int64, key_index=0,
                value_dtype=tf.int64, value_index=1,
                delimiter="\t",
            ),
            default_value=unk_id,
        )
        self.tag_names = tf.constant(tags)
        self.window, self.stride = window, stride

    def _outputs(self, char_ids, lengths):
        tag_ids = self.tagger.predict_tags(char_ids, lengths, self.window, self.stride)
        return {"tag_ids": tag_ids, "tags": tf.gather(self.tag_names, tag_ids), "lengths": lengths}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(self, text):
        # Invalid UTF-8 becomes U+FFFD, one position per bad byte sequence, never dropped.
        codepoints = tf.strings.unicode_decode(text, "UTF-8", errors="replace")  # ragged [batch, (chars)]
        ids = tf.ragged.map_flat_values(
            lambda cp: tf.cast(self.table.lookup(tf.cast(cp, tf.int64)), tf.int32), codepoints
        )
        return self._outputs(ids.to_tensor(0), tf.cast(ids.row_lengths(), tf.int32))

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.int32, name="char_ids"),
            tf.TensorSpec([None], tf.int32, name="lengths"),
        ]
    )
    def predict_ids(self, char_ids, lengths):
        return self._outputs(char_ids, lengths)


def export_saved_model(tagger, model_dir: ModelDir, tokenizer: CharTokenizer, tagset: TagSet) -> Path:
    """Writes MODEL_DIR/1 (replacing an older export) and returns its path."""
    max_seq_length = model_dir.load_model_config()["max_seq_length"]
    window = max_seq_length - 2
    stride = max(1, window // 2)
    with tempfile.TemporaryDirectory() as tmp:
        table_file = Path(tmp) / CODEPOINT_TABLE
        tokenizer.write_codepoint_table(table_file)
        module = NerServingModule(
            tagger, str(table_file), tagset.tags, tokenizer.vocab.unk_id, window, stride
        )
        target = model_dir.saved_model
        staging = target.with_name(target.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        tf.saved_model.save(
            module,
            str(staging),
            signatures={"serving_default": module.serve_text, "predict_ids": module.predict_ids},
        )
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def export_model_dir(path) -> Path:
    """Rebuilds the tagger from MODEL_DIR/weights.npz and (re-)exports MODEL_DIR/1."""
    from albert_ner.model.tagger import Tagger
    from albert_ner.model_dir import load_weights

    model_dir = ModelDir(path)
    model_dir.require(model_dir.weights, model_dir.config, model_dir.labels, model_dir.vocab)
    config = model_dir.load_model_config()
    tokenizer = model_dir.load_tokenizer()
    tagset = model_dir.load_tagset()
    tagger = Tagger(
        model_dir.encoder_config(),
        num_tags=len(tagset.tags),
        head=config["head"],
        classifier_dropout=config.get("classifier_dropout", 0.1),
        cls_id=tokenizer.vocab.cls_id,
        sep_id=tokenizer.vocab.sep_id,
    )
    tagger.set_allowed_transitions(*tagset.allowed_transitions())
    tagger.build_variables()
    load_weights(tagger, model_dir.weights)
    return export_saved_model(tagger, model_dir, tokenizer, tagset)
