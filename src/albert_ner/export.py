"""Export a trained tagger as a TF SavedModel that TF Serving can run as is.

Two signatures:
  serving_default  text: string [batch] → tag_ids int32 [batch, chars], tags string
                   [batch, chars], lengths int32 [batch], entity_scores float32
                   [batch, chars] (at the first character of each decoded entity, the
                   probability of that exact span and type — `model.crf`; 0 elsewhere).
                   Tokenization happens in the graph:
                   UTF-8 → code points → a lookup table shipped as an asset. The table lists,
                   for every code point the Python tokenizer maps to a known id, that id, so
                   both tokenizers agree on every character while the graph uses core ops only
                   (TF Serving does not bundle tensorflow-text).
  predict_ids      char_ids int32 [batch, chars], lengths int32 [batch] → the same outputs,
                   for callers that tokenize themselves (`albert-ner predict`/`evaluate`).

Both run `Tagger.predict_tags_and_scores`: overlapping windows of max_seq_length - 2
characters, blended, one constrained Viterbi pass and one forward-backward pass over the whole
sentence — long texts are never truncated.

`write_tfs_package` bundles the SavedModel for the SageMaker TensorFlow Serving container
(BYOS): model.tar.gz with `1/` (the SavedModel), `code/inference.py` (the standard-library
handlers of `serving.tfs_inference`), `code/request_formats.py` (the server's request parsing,
`serving.requests`, which the handlers share) and `code/labels.json` (tags and scheme).
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import tempfile
from pathlib import Path

import tensorflow as tf

from albert_ner.data.schemes import TagSet
from albert_ner.durable_io import explain_disk_full, fsync_dir, fsync_tree, variable_bytes
from albert_ner.model.crf import continuation_matrix
from albert_ner.model_dir import ModelDir
from albert_ner.text.tokenizer import CharTokenizer

CODEPOINT_TABLE = "codepoints.tsv"


class NerServingModule(tf.Module):
    """The exported graph: a trained tagger plus its tokenizer table and tag names."""

    def __init__(
        self, tagger, table_file: str, tags: list[str], unk_id: int, window: int, stride: int,
        scheme: str = "bio",
    ):
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
        # The scheme's grammar as graph constants, for the entity scores.
        continues, is_entity = continuation_matrix(tags, scheme)
        self.continues, self.is_entity = tf.constant(continues), tf.constant(is_entity)

    def _outputs(self, char_ids, lengths):
        tag_ids, scores = self.tagger.predict_tags_and_scores(
            char_ids, lengths, self.window, self.stride, self.continues, self.is_entity
        )
        return {
            "tag_ids": tag_ids,  # [batch, chars] int32
            "tags": tf.gather(self.tag_names, tag_ids),  # [batch, chars] string
            "lengths": lengths,  # [batch] int32
            "entity_scores": scores,  # [batch, chars] float32
        }

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
    """Writes MODEL_DIR/1 (replacing an older export) and returns its path.

    The SavedModel is written to the sibling `1.tmp/`, fsynced, and only then swapped in, so
    an older export stays whole until the new one is complete. A full disk raises
    `DiskFullError` (the path, the bytes needed at least, the space free) and removes `1.tmp/`.
    """
    max_seq_length = model_dir.load_model_config()["max_seq_length"]
    window = max_seq_length - 2
    stride = max(1, window // 2)
    target = model_dir.saved_model
    staging = target.with_name(target.name + ".tmp")
    # At least the variables; the graph adds a few MB on top.
    needed = variable_bytes(tagger.variables)
    kept = f"The previous export {target} is unchanged." if target.exists() else ""
    with explain_disk_full(staging, needed, kept):
        try:
            with tempfile.TemporaryDirectory() as tmp:
                table_file = Path(tmp) / CODEPOINT_TABLE
                tokenizer.write_codepoint_table(table_file)
                module = NerServingModule(
                    tagger, str(table_file), tagset.tags, tokenizer.vocab.unk_id, window, stride,
                    scheme=tagset.scheme,
                )
                shutil.rmtree(staging, ignore_errors=True)
                tf.saved_model.save(
                    module,
                    str(staging),
                    signatures={"serving_default": module.serve_text, "predict_ids": module.predict_ids},
                )
            fsync_tree(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    _swap_in(staging, target)
    return target


def _swap_in(staging: Path, target: Path) -> None:
    """staging → target, the old target out of the way first (renames only, then removed)."""
    retired = target.with_name(target.name + ".old")
    shutil.rmtree(retired, ignore_errors=True)
    if target.exists():
        target.rename(retired)
    staging.rename(target)
    fsync_dir(target.parent)
    shutil.rmtree(retired, ignore_errors=True)


def export_model_dir(path) -> Path:
    """Rebuilds the tagger from MODEL_DIR/weights.npz and (re-)exports MODEL_DIR/1."""
    from albert_ner.model.tagger import Tagger
    from albert_ner.model_dir import load_weights

    model_dir = ModelDir(path)
    model_dir.require(model_dir.weights, model_dir.config, model_dir.labels, model_dir.vocab)
    tokenizer = model_dir.load_tokenizer()
    tagset = model_dir.load_tagset()
    tagger = Tagger(
        model_dir.encoder_config(),
        num_tags=len(tagset.tags),
        cls_id=tokenizer.vocab.cls_id,
        sep_id=tokenizer.vocab.sep_id,
        unk_id=tokenizer.vocab.unk_id,
        **model_dir.tagger_options(),
    )
    tagger.set_allowed_transitions(*tagset.allowed_transitions())
    tagger.build_variables()
    load_weights(tagger, model_dir.weights)
    return export_saved_model(tagger, model_dir, tokenizer, tagset)


# Files of the TF Serving package besides the SavedModel.
TFS_HANDLER = "code/inference.py"
TFS_FORMATS = "code/request_formats.py"
TFS_LABELS = "code/labels.json"


def write_tfs_package(path, output) -> Path:
    """Writes model.tar.gz for the SageMaker TensorFlow Serving container (BYOS route).

    Layout (what the container looks for under /opt/ml/model):
      1/saved_model.pb, 1/variables/…, 1/assets/…   the SavedModel, version 1
      code/inference.py                             input_handler / output_handler
      code/request_formats.py                       request parsing shared with the server
      code/labels.json                              {"scheme", "types", "tags"}

    Args:
      path: a model directory with an exported SavedModel (`albert-ner export`).
      output: the .tar.gz to write (parent directories are created).

    Returns:
      The path written.

    Raises:
      FileNotFoundError: the model directory lacks the SavedModel or labels.json.
      ValueError: the SavedModel predates entity scores (re-export it).
    """
    from albert_ner.serving import requests as request_formats
    from albert_ner.serving import tfs_inference

    model_dir = ModelDir(path)
    model_dir.require(model_dir.saved_model, model_dir.labels)
    _check_scores_output(model_dir.saved_model)
    labels = json.dumps(model_dir.load_tagset().to_json(), ensure_ascii=False, indent=2) + "\n"
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.with_name(output.name + ".tmp")
    with tarfile.open(staging, "w:gz") as tar:
        tar.add(model_dir.saved_model, arcname=model_dir.saved_model.name)
        tar.add(tfs_inference.__file__, arcname=TFS_HANDLER)
        tar.add(request_formats.__file__, arcname=TFS_FORMATS)
        info = tarfile.TarInfo(TFS_LABELS)
        data = labels.encode("utf-8")
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    staging.replace(output)
    return output


def _check_scores_output(saved_model: Path) -> None:
    """The handlers read `entity_scores`; an export from before it existed cannot serve them."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((saved_model / "saved_model.pb").read_bytes())
    outputs = proto.meta_graphs[0].signature_def["serving_default"].outputs
    if "entity_scores" not in outputs:
        raise ValueError(
            f"{saved_model} has no entity_scores output (exported by an older version); "
            "re-export it with `albert-ner export --model-dir DIR`"
        )
