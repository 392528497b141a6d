"""Text in, entities out — the one prediction path behind `predict`, `evaluate` and training.

A `Predictor` wraps any function `tag_fn(char_ids [batch, chars], lengths [batch])` returning
either tag ids [batch, chars] or a tuple (tag ids, entity_scores [batch, chars]): during
training that is the Keras tagger's `predict_tags`; from a model directory it is the exported
SavedModel's `predict_ids` signature, which also returns each entity's probability at its
first character (`model.crf`). Both run the same graph code (windows, blending, constrained
Viterbi), so training-time dev scores and `albert-ner evaluate` agree. Entities carry
`score` when the function returns scores, None otherwise.

This module imports nothing from `albert_ner.train`: the server and the CLI load it without
the training package (batching and metrics sit below both, in `text.batching` and `scoring`).

Example:
  predictor = Predictor.from_model_dir("runs/msra")
  for example in predictor.predict(["王小明在北京大学读书。"]):
      print([e.to_json(example.text) for e in example.entities])
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Iterable

import numpy as np

from albert_ner.data.example import Example
from albert_ner.data.schemes import TagSet
from albert_ner.model_dir import ModelDir
from albert_ner.scoring import evaluate_predictions
from albert_ner.text.batching import sentence_batches
from albert_ner.text.tokenizer import CharTokenizer

# Padded characters per inference batch; memory grows with it, speed barely does past this.
DEFAULT_BATCH_TOKENS = 8192


class Predictor:
    """Tokenizes, batches by length, tags and decodes whole sentences of any length.

    Args:
      tag_fn: (char_ids int32 [batch, chars], lengths int32 [batch]) → tag ids [batch, chars],
        or → (tag ids, entity_scores float [batch, chars]).
      tokenizer: the model's character tokenizer.
      tagset: the model's tags (decoding).
      batch_tokens: padded characters per call of tag_fn.
    """

    def __init__(
        self,
        tag_fn: Callable,
        tokenizer: CharTokenizer,
        tagset: TagSet,
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
    ):
        self.tag_fn = tag_fn
        self.tokenizer = tokenizer
        self.tagset = tagset
        self.batch_tokens = batch_tokens

    @classmethod
    def from_model_dir(cls, path, batch_tokens: int = DEFAULT_BATCH_TOKENS) -> "Predictor":
        """Loads the SavedModel of a model directory (see `model_dir.ModelDir`).

        Exports made before entity scores existed have no `entity_scores` output; their
        entities then have `score=None` (re-export with `albert-ner export` to get scores).
        """
        import tensorflow as tf

        model_dir = ModelDir(path)
        model_dir.require(model_dir.saved_model, model_dir.labels, model_dir.vocab)
        loaded = tf.saved_model.load(str(model_dir.saved_model))
        signature = loaded.signatures["predict_ids"]
        has_scores = "entity_scores" in signature.structured_outputs

        def tag_fn(char_ids, lengths):
            out = signature(char_ids=tf.constant(char_ids), lengths=tf.constant(lengths))
            if has_scores:
                return out["tag_ids"].numpy(), out["entity_scores"].numpy()
            return out["tag_ids"].numpy()

        predictor = cls(tag_fn, model_dir.load_tokenizer(), model_dir.load_tagset(), batch_tokens)
        predictor._loaded = loaded  # keep the SavedModel's resources alive
        return predictor

    def predict(self, texts: Iterable[str], progress: bool = False) -> list[Example]:
        """Entities for each text, in input order (texts may be empty or any length).

        Args:
          texts: the sentences.
          progress: print a line to stderr every 20 batches.

        Returns:
          One `Example` per text, entities sorted by start, each with `score` when the
          tagging function gives scores.
        """
        texts = list(texts)
        ids = [self.tokenizer.encode(t) for t in texts]
        lengths = [len(x) for x in ids]
        results: list[Example | None] = [None] * len(texts)
        batches = sentence_batches(lengths, self.batch_tokens)
        started = time.time()
        for done, batch in enumerate(batches, 1):
            width = max(max(lengths[i] for i in batch), 1)
            char_ids = np.zeros((len(batch), width), np.int32)
            for row, i in enumerate(batch):
                char_ids[row, : lengths[i]] = ids[i]
            out = self.tag_fn(char_ids, np.asarray([lengths[i] for i in batch], np.int32))
            tags, scores = out if isinstance(out, tuple) else (out, None)
            tags = np.asarray(tags)
            for row, i in enumerate(batch):
                entities = self.tagset.decode(tags[row, : lengths[i]].tolist())
                if scores is not None:
                    row_scores = np.asarray(scores[row])
                    entities = [dataclasses.replace(e, score=float(row_scores[e.start])) for e in entities]
                results[i] = Example(texts[i], entities)
            if progress and (done % 20 == 0 or done == len(batches)):
                print(
                    f"  predicted {done}/{len(batches)} batches ({time.time() - started:.0f}s)",
                    file=sys.stderr,
                    flush=True,
                )
        return results


def evaluate(predictor: Predictor, gold: list[Example], progress: bool = False) -> dict:
    """Entity-level and token-level scores of the predictor on gold examples (full sentences)."""
    predicted = predictor.predict([e.text for e in gold], progress=progress)
    return evaluate_predictions(gold, predicted, predictor.tagset.types)
