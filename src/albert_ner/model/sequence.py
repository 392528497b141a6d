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
import numpy as np
import tensorflow as tf

from albert_ner.model.config import EncoderConfig
from albert_ner.model.encoder import PAD_ID, Encoder

# Multiplier of the bigram hash (Knuth's golden-ratio constant, < 2**32); with keys reduced
# modulo the Mersenne prime 2**31 - 1 first, key * multiplier stays below 2**63 (no overflow).
_HASH_MULTIPLIER = 2654435761
_HASH_PRIME = 2147483647
# A bigram's key is first id · 2**20 + second id (`bigram_key`, `known_bigram_keys`).
_BIGRAM_SHIFT = 1 << 20


def sequence_lengths(input_ids):
    """Real tokens per row of framed ids ([CLS] and [SEP] included): int32 [batch]."""
    return tf.reduce_sum(tf.cast(tf.not_equal(input_ids, PAD_ID), tf.int32), axis=1)


def following_ids(input_ids):
    """The token after each position, [PAD] (id 0) after the last: [batch, seq]."""
    return tf.pad(input_ids[:, 1:], [[0, 0], [0, 1]])


def bigram_key(ids, following):
    """The key of the bigram (ids, following), exact for vocabularies below a million entries."""
    return tf.cast(ids, tf.int64) * _BIGRAM_SHIFT + tf.cast(following, tf.int64)


def bigram_buckets(input_ids, buckets: int, following=None):
    """Hashed id of the bigram (token t, token t+1) at each position t: int32 [batch, seq].

    The last token of a row pairs with [PAD] (id 0), so every position has a bigram. A hash
    instead of a bigram vocabulary keeps the feature a pure function of the ids — nothing to
    ship beside the model, and computable in the exported graph with arithmetic ops.
    `following` replaces the token each position is paired with (`KnownBigrams`).
    """
    if following is None:
        following = following_ids(input_ids)
    key = bigram_key(input_ids, following)
    hashed = tf.math.floormod(tf.math.floormod(key, _HASH_PRIME) * _HASH_MULTIPLIER, buckets)
    return tf.cast(hashed, tf.int32)


def known_bigram_keys(id_rows, special_ids) -> np.ndarray:
    """Sorted unique keys of the bigrams of two ordinary tokens in rows of ids (NumPy).

    The table `KnownBigrams` holds: built from the training windows, as the model reads them.
    """
    rows = [np.asarray(row, np.int64) for row in id_rows]
    if not rows:
        return np.zeros([0], np.int64)
    first = np.concatenate([row[:-1] for row in rows])
    second = np.concatenate([row[1:] for row in rows])
    plain = ~np.isin(first, list(special_ids)) & ~np.isin(second, list(special_ids))
    return np.unique(first[plain] * _BIGRAM_SHIFT + second[plain])


class KnownBigrams(keras.layers.Layer):
    """Pairs each character, for its bigram, with [UNK] when the pair never occurred in training.

    A bigram the training data never showed still hashes to some row of the bigram table —
    a row trained for other bigrams, so its features mean something else. On a small set
    that is most bigrams: 42 % of MSRA test's character pairs are not in its first 1,500
    training sentences. Hidden characters in training (`Tagger.unk_dropout`) have taught the
    model what "this character, then one I do not know" looks like, so an unseen pair is read
    that way instead: (a, b) becomes (a, [UNK]). Test entity F1 of four small-data models:
    0.590–0.602 → 0.612–0.618 (BENCHMARKS.md, "Small data"); on all of MSRA (9 % unseen)
    −0.001 to +0.002. Pairs with a special token ([CLS], [SEP], [UNK], [PAD]) stay as they are.

    The table is a non-trainable weight (sorted int64 keys, `set_keys`), looked up with
    `tf.searchsorted`, so the export needs nothing beside the model.

    Call args: input_ids int [batch, seq] (framed). Returns the ids to pair with, [batch, seq].
    """

    def __init__(self, size: int, special_ids, unk_id: int, **kwargs):
        super().__init__(**kwargs)
        if size < 1:
            raise ValueError(f"a known-bigram table needs at least one entry, got {size}")
        self.size, self.unk_id = int(size), int(unk_id)
        self.special_ids = sorted({int(i) for i in special_ids} | {PAD_ID, int(unk_id)})

    def build(self, input_shape=None):
        self.keys = self.add_weight(shape=(self.size,), dtype="int64", initializer="zeros",
                                    trainable=False, name="keys")
        super().build(input_shape)

    def set_keys(self, keys: np.ndarray) -> None:
        """Loads the table: `known_bigram_keys` of the training windows."""
        keys = np.asarray(keys, np.int64)
        if keys.shape != (self.size,):
            raise ValueError(f"expected {self.size} bigram keys, got {keys.shape}")
        if self.size > 1 and not np.all(keys[1:] > keys[:-1]):
            raise ValueError("bigram keys must be sorted and unique")
        if not self.built:
            self.build()
        self.keys.assign(keys)

    def call(self, input_ids):
        following = following_ids(input_ids)
        key = bigram_key(input_ids, following)
        table = tf.convert_to_tensor(self.keys)
        at = tf.minimum(tf.searchsorted(table, tf.reshape(key, [-1])), self.size - 1)
        known = tf.reshape(tf.gather(table, at), tf.shape(key)) == key
        special = tf.constant(self.special_ids, input_ids.dtype)

        def is_special(ids):
            return tf.reduce_any(ids[..., None] == special, axis=-1)

        unseen = ~known & ~is_special(input_ids) & ~is_special(following)
        return tf.where(unseen, tf.cast(self.unk_id, following.dtype), following)


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

    def call(self, input_ids, following=None):
        return self.table(bigram_buckets(input_ids, self.buckets, following))


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


def stack_features(encoder, bigrams, lstm, input_ids, training=False, dropout=None, extra=None,
                   following=None):
    """Encoder output [+ bigram embeddings] [+ extra features] [→ BiLSTM]: [batch, seq, features].

    Args:
      encoder, bigrams, lstm: from `stack_layers` (bigrams, lstm may be None).
      dropout: a layer applied before the BiLSTM (the tagger's), or None.
      extra: features [batch, seq, k] concatenated before the BiLSTM (the tagger's lexicon
        features, `model.lexicon`), or None.
      following: the ids the bigrams pair each position with (`KnownBigrams`); None = the
        next token.
    """
    hidden = encoder(input_ids, training=training)  # [batch, seq, hidden]
    if bigrams is not None:
        hidden = tf.concat([hidden, tf.cast(bigrams(input_ids, following), hidden.dtype)], axis=-1)
    if extra is not None:
        hidden = tf.concat([hidden, tf.cast(extra, hidden.dtype)], axis=-1)
    if lstm is not None:
        if dropout is not None:
            hidden = dropout(hidden, training=training)
        hidden = lstm(hidden, sequence_lengths(input_ids))  # [batch, seq, 2 * units]
    return hidden
