"""Encoder variants, and sentence-level prediction over windows (never truncated)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from albert_ner.model.config import EncoderConfig
from albert_ner.model.tagger import Tagger
from albert_ner.text.windows import merge_window_scores, window_starts

SMALL = dict(vocab_size=60, hidden_size=24, num_attention_heads=2, intermediate_size=32,
             num_hidden_layers=3, max_position_embeddings=64)


def make_tagger(num_tags=5, **overrides) -> Tagger:
    keras.utils.set_random_seed(0)
    config = EncoderConfig(**{**SMALL, "embedding_size": 8, **overrides})
    tagger = Tagger(config, num_tags=num_tags, cls_id=3, sep_id=4)
    tagger.build_variables()
    return tagger


@pytest.mark.parametrize(
    "overrides, expected_blocks",
    [
        (dict(model_type="albert", embedding_layout="brightmart"), 1),
        (dict(model_type="albert", embedding_layout="google"), 1),
        (dict(model_type="albert", ln_type="preln"), 1),
        (dict(model_type="bert", embedding_size=None), 3),
    ],
)
def test_encoder_variants_build_and_run(overrides, expected_blocks):
    tagger = make_tagger(**overrides)
    assert len(tagger.encoder.blocks) == expected_blocks
    ids = tf.constant([[3, 10, 11, 12, 4, 0, 0]], tf.int32)
    scores = tagger(ids)
    assert scores.shape == (1, 5, 5)
    assert scores.dtype == tf.float32
    assert np.all(np.isfinite(scores.numpy()))


def test_padding_does_not_change_scores():
    tagger = make_tagger()
    short = tagger(tf.constant([[3, 10, 11, 4]], tf.int32)).numpy()
    padded = tagger(tf.constant([[3, 10, 11, 4, 0, 0, 0]], tf.int32)).numpy()
    np.testing.assert_allclose(short[0, :2], padded[0, :2], atol=1e-5)


def test_albert_config_json_loads_vendor_fields(tmp_path):
    path = tmp_path / "albert_config_tiny.json"
    path.write_text(
        '{"attention_probs_dropout_prob": 0.0, "hidden_act": "gelu", "hidden_dropout_prob": 0.0,'
        '"hidden_size": 312, "embedding_size": 128, "initializer_range": 0.02,'
        '"intermediate_size": 1248, "max_position_embeddings": 512, "num_attention_heads": 12,'
        '"num_hidden_layers": 4, "pooler_type": "first_token_transform", "type_vocab_size": 2,'
        '"vocab_size": 21128, "ln_type": "postln"}'
    )
    config = EncoderConfig.resolve(path)
    assert config.model_type == "albert" and config.factorised
    assert (config.hidden_size, config.embedding_size, config.vocab_size) == (312, 128, 21128)
    assert EncoderConfig.resolve("tiny").to_dict()["hidden_size"] == 312
    with pytest.raises(ValueError, match="neither a preset"):
        EncoderConfig.resolve("no-such-config")


def _reference_sentence_scores(tagger, char_ids, window, stride):
    """Independent merge: score each window alone, blend with text.windows' numpy code."""
    n = len(char_ids)
    starts = window_starts(n, window, stride)
    pieces = []
    for s in starts:
        piece = char_ids[s : s + window]
        framed = tf.constant([[tagger.cls_id, *piece, tagger.sep_id]], tf.int32)
        pieces.append(tagger(framed).numpy()[0, : len(piece)])
    return merge_window_scores(n, starts, pieces)


@pytest.mark.parametrize("length", [1, 7, 10, 23, 61])
def test_sentence_emissions_match_windowed_reference(length):
    tagger = make_tagger()
    rng = np.random.default_rng(length)
    window, stride = 10, 5
    batch_lengths = [length, max(1, length // 3), 4]
    width = max(batch_lengths)
    char_ids = np.zeros((3, width), np.int32)
    rows = [rng.integers(5, 60, size=n) for n in batch_lengths]
    for r, ids in enumerate(rows):
        char_ids[r, : len(ids)] = ids
    scores = tagger.sentence_emissions(
        tf.constant(char_ids), tf.constant(batch_lengths, tf.int32), window, stride
    ).numpy()
    for r, ids in enumerate(rows):
        expected = _reference_sentence_scores(tagger, ids.tolist(), window, stride)
        np.testing.assert_allclose(scores[r, : len(ids)], expected, atol=1e-4)


def test_predict_tags_covers_every_character_of_long_text():
    tagger = make_tagger()
    n = 300
    ids = np.random.default_rng(1).integers(5, 60, size=(1, n)).astype(np.int32)
    tags = tagger.predict_tags(tf.constant(ids), tf.constant([n]), 20, 10).numpy()
    assert tags.shape == (1, n)
    assert set(np.unique(tags)) <= set(range(5))
