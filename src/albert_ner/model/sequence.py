"""Layers that give the tagger a locality bias: character bigrams and a BiLSTM.

A transformer trained from random init on a few million characters learns word boundaries
slowly (it has no notion of "next to"); the classic Chinese NER recipe — character
embeddings, character-bigram embeddings and a bidirectional LSTM under a CRF — learns them
in minutes. These layers let the tagger be that classic model (with `CharEmbeddingEncoder`)
or put a BiLSTM on top of ALBERT/BERT (ALBERT-BiLSTM-CRF).

Everything here runs on framed ids (`[CLS] chars [SEP] [PAD]…`, see `model.tagger`) with
core TensorFlow ops only, so the exported SavedModel still takes raw strings and TF Serving
can run it.

Example:
  bigrams = BigramEmbedding(buckets=1 << 18, width=32)
  lstm = BiLSTM(units=128)
  x = tf.concat([chars(ids), bigrams(ids)], -1)    # [batch, seq, E + 32]
  h = lstm(x, lengths)                              # [batch, seq, 256]
"""

from __future__ import annotations

import keras
import tensorflow as tf

from albert_ner.model.config import EncoderConfig
from albert_ner.model.encoder import PAD_ID, Encoder

# Multiplier of the bigram hash (Knuth's golden-ratio constant, < 2**32); with keys reduced
# modulo the Mersenne prime 2**31 - 1 first, key * multiplier stays below 2**63 (no overflow).
_HASH_MULTIPLIER = 2654435761
_HASH_PRIME = 2147483647


def sequence_lengths(input_ids):
    """Real tokens per row of framed ids ([CLS] and [SEP] included): int32 [batch]."""
    return tf.reduce_sum(tf.cast(tf.not_equal(input_ids, PAD_ID), tf.int32), axis=1)


def bigram_buckets(input_ids, buckets: int):
    """Hashed id of the bigram (token t, token t+1) at each position t: int32 [batch, seq].

    The last token of a row pairs with [PAD] (id 0), so every position has a bigram. A hash
    instead of a bigram vocabulary keeps the feature a pure function of the ids — nothing to
    ship beside the model, and computable in the exported graph with arithmetic ops.
    """
    ids = tf.cast(input_ids, tf.int64)
    following = tf.pad(ids[:, 1:], [[0, 0], [0, 1]])  # [batch, seq], PAD after the last token
    key = ids * (1 << 20) + following  # exact for vocabularies below a million entries
    hashed = tf.math.floormod(tf.math.floormod(key, _HASH_PRIME) * _HASH_MULTIPLIER, buckets)
    return tf.cast(hashed, tf.int32)


class BigramEmbedding(keras.layers.Layer):
    """Embedding of hashed character bigrams: ids [batch, seq] → [batch, seq, width]."""

    def __init__(self, buckets: int, width: int, initializer_range: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        if buckets < 2 or width < 1:
            raise ValueError(f"bigram buckets must be ≥ 2 and width ≥ 1, got {buckets}, {width}")
        self.buckets, self.width = int(buckets), int(width)
        self.table = keras.layers.Embedding(
            self.buckets, self.width,
            embeddings_initializer=keras.initializers.TruncatedNormal(stddev=initializer_range),
            name="bigram_embeddings",
        )

    def call(self, input_ids):
        return self.table(bigram_buckets(input_ids, self.buckets))


class BiLSTM(keras.layers.Layer):
    """A bidirectional LSTM over right-padded sequences, driven by lengths (no mask).

    The forward direction never sees padding before a real token, so it runs unmasked. The
    backward direction runs over each row reversed within its own length
    (`tf.reverse_sequence`), so it starts at the row's last real token rather than in the
    padding; its output is reversed back. Without a mask, Keras can use the fused cuDNN
    kernel on a GPU.

    Call args:
      x: [batch, seq, features].
      lengths: int32 [batch], real positions per row.
    Returns:
      [batch, seq, 2 * units]; positions past a row's length hold values to be ignored.
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.forward_lstm = keras.layers.LSTM(self.units, return_sequences=True, name="forward")
        self.backward_lstm = keras.layers.LSTM(self.units, return_sequences=True, name="backward")

    def call(self, x, lengths):
        forward = self.forward_lstm(x)
        reversed_x = tf.reverse_sequence(x, lengths, seq_axis=1, batch_axis=0)
        backward = tf.reverse_sequence(self.backward_lstm(reversed_x), lengths, seq_axis=1, batch_axis=0)
        return tf.concat([forward, backward], axis=-1)


class CharEmbeddingEncoder(keras.layers.Layer):
    """The no-transformer encoder: a character embedding table, nothing else.

    Config fields used: vocab_size, hidden_size (the embedding width), initializer_range and
    hidden_dropout_prob. With a BiLSTM and a CRF on top this is the classic BiLSTM-CRF.

    Call args:
      input_ids: int32 [batch, seq], framed.
    Returns:
      [batch, seq, hidden_size].
    """

    def __init__(self, config: EncoderConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.word_embeddings = keras.layers.Embedding(
            config.vocab_size, config.hidden_size,
            embeddings_initializer=keras.initializers.TruncatedNormal(stddev=config.initializer_range),
            name="word_embeddings",
        )
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)

    def call(self, input_ids, training=False):
        return self.dropout(self.word_embeddings(input_ids), training=training)


def stack_layers(config: EncoderConfig, lstm_units: int = 0, bigram_buckets: int = 0, bigram_size: int = 0):
    """The layers every model over framed ids shares: (encoder, bigrams or None, BiLSTM or None).

    Built with the names `Tagger` and `MaskedLM` both carry ("encoder", "bigrams", "bilstm"),
    so weights pretrained in one load into the other by name. Assign them to a Keras model's
    attributes so that it tracks them.
    """
    if bool(bigram_buckets) != bool(bigram_size):
        raise ValueError("bigram_buckets and bigram_size must both be set or both be 0")
    if config.model_type == "chars":
        encoder = CharEmbeddingEncoder(config, name="encoder")
    else:
        encoder = Encoder(config, name="encoder")
    bigrams = (
        BigramEmbedding(bigram_buckets, bigram_size, config.initializer_range, name="bigrams")
        if bigram_buckets else None
    )
    lstm = BiLSTM(lstm_units, name="bilstm") if lstm_units else None
    return encoder, bigrams, lstm


def stack_features(encoder, bigrams, lstm, input_ids, training=False, dropout=None, extra=None):
    """Encoder output [+ bigram embeddings] [+ extra features] [→ BiLSTM]: [batch, seq, features].

    Args:
      encoder, bigrams, lstm: from `stack_layers` (bigrams, lstm may be None).
      dropout: a layer applied before the BiLSTM (the tagger's), or None.
      extra: features [batch, seq, k] concatenated before the BiLSTM (the tagger's lexicon
        features, `model.lexicon`), or None.
    """
    hidden = encoder(input_ids, training=training)  # [batch, seq, hidden]
    if bigrams is not None:
        hidden = tf.concat([hidden, tf.cast(bigrams(input_ids), hidden.dtype)], axis=-1)
    if extra is not None:
        hidden = tf.concat([hidden, tf.cast(extra, hidden.dtype)], axis=-1)
    if lstm is not None:
        if dropout is not None:
            hidden = dropout(hidden, training=training)
        hidden = lstm(hidden, sequence_lengths(input_ids))  # [batch, seq, 2 * units]
    return hidden
