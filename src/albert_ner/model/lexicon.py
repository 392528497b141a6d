"""Lexicon features: which dictionary words cover each character, computed inside the graph.

A character model trained on a few thousand sentences has seen few names; a dictionary has
seen many. For every character this layer reports whether a dictionary word of each class
(e.g. "any word", PER, LOC, ORG) Begins, is Inside (Middle) or Ends at it — 3 × classes
binary channels, concatenated to the encoder output like the bigram embeddings. The model
learns how much to trust each channel; the dictionary only has to be roughly right.

Optionally (`profile_vocab` > 0) each character also gets its *profile*: how often it begins,
runs through, ends or alone forms a dictionary word of each class, regardless of context
(`text.lexicon.character_profile`). Names the dictionary does not list are still made of
characters it knows: a surname begins hundreds of person names, 省/市/县 end place names.
4 × classes more channels, one table row per vocabulary id.

The dictionary is stored in the model as two non-trainable weights: the sorted hash keys of
its words' id sequences (int64) and each word's class bits (int32). A lookup is
`tf.searchsorted` over the keys — arithmetic and core ops only, so the exported SavedModel
still takes raw strings and TF Serving runs it, with nothing to ship beside the model.

Hash of the ids w_1 … w_L of a word (ids < 2**20, vocabularies below a million entries):
  h_0 = 0;  h_j = (h_{j-1} · 2**20 + w_j) mod P,  P = 4398046511093 (the largest prime < 2**42)
so h · 2**20 + w < 2**62 never overflows int64. `word_key` is the same function in NumPy,
for building the key table; the two must agree (tests/test_lexicon.py).

Example:
  lexicon = LexiconFeatures(size=len(keys), max_len=8, num_classes=4)
  lexicon.set_entries(keys, bits)
  features = lexicon(input_ids)    # float32 [batch, seq, 12]
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

_SHIFT = 1 << 20
_PRIME = 4398046511093
ROLES = ("B", "M", "E")  # the word begins at / runs through / ends at the character
# Roles of a character in the profile: the three above, and "S", a one-character word.
PROFILE_ROLES = ("B", "M", "E", "S")


def word_key(ids: Sequence[int]) -> int:
    """Hash key of one word's id sequence (the NumPy twin of `ngram_keys`)."""
    h = 0
    for i in ids:
        if not 0 <= int(i) < _SHIFT:
            raise ValueError(f"token id {i} outside [0, 2**20): the lexicon hash needs smaller vocabularies")
        h = (h * _SHIFT + int(i)) % _PRIME
    return h


def ngram_keys(input_ids, max_len: int):
    """Keys of the id n-grams starting at each position, lengths 2..max_len.

    Args:
      input_ids: int [batch, seq].
      max_len: the longest n-gram.
    Returns:
      list over n = 2..max_len of int64 [batch, seq - n + 1]: the key of ids[t : t + n].
    """
    ids = tf.cast(input_ids, tf.int64)
    seq = tf.shape(ids)[1]
    keys, h = [], ids
    for n in range(2, max_len + 1):
        width = tf.maximum(seq - n + 1, 0)
        # h holds the keys of the (n-1)-grams; extend each by the id that follows it.
        h = tf.math.floormod(h[:, :width] * _SHIFT + ids[:, n - 1 : n - 1 + width], _PRIME)
        keys.append(h)
    return keys


class LexiconFeatures(keras.layers.Layer):
    """B/M/E membership of dictionary words per class: ids [batch, seq] → [batch, seq, channels].

    Args:
      size: number of dictionary entries (the weights' length; ≥ 1).
      max_len: longest word, in characters, that is looked up.
      num_classes: class bits per entry (channel c·3 + r is class c, role ROLES[r]).
      profile_vocab: rows of the character-profile table (the vocabulary size), 0 = no
        profile; its 4·C channels follow the 3·C above (c·4 + r: class c, PROFILE_ROLES[r]).
    """

    def __init__(self, size: int, max_len: int, num_classes: int, profile_vocab: int = 0, **kwargs):
        kwargs.setdefault("dtype", "float32")  # binary features; cast by the caller
        super().__init__(**kwargs)
        if size < 1 or max_len < 2 or not 1 <= num_classes <= 31:
            raise ValueError(
                f"lexicon needs size ≥ 1, max_len ≥ 2 and 1–31 classes, got {size}, {max_len}, {num_classes}"
            )
        self.size, self.max_len, self.num_classes = int(size), int(max_len), int(num_classes)
        self.profile_vocab = int(profile_vocab)
        self.channels = 3 * self.num_classes + (len(PROFILE_ROLES) * self.num_classes if profile_vocab else 0)

    def build(self, input_shape=None):
        # Weights, not constants: they travel with save_weights/checkpoints and the SavedModel.
        self.keys = self.add_weight(shape=(self.size,), dtype="int64", initializer="zeros",
                                    trainable=False, name="keys")
        self.bits = self.add_weight(shape=(self.size,), dtype="int32", initializer="zeros",
                                    trainable=False, name="class_bits")
        self.profile = None
        if self.profile_vocab:
            self.profile = self.add_weight(
                shape=(self.profile_vocab, len(PROFILE_ROLES) * self.num_classes), dtype="float32",
                initializer="zeros", trainable=False, name="char_profile",
            )
        super().build(input_shape)

    def set_entries(self, keys: np.ndarray, bits: np.ndarray, profile: np.ndarray | None = None) -> None:
        """Loads the dictionary: keys sorted ascending and unique, bits their class masks, and
        (with profile_vocab) the character profiles [profile_vocab, 4·C]."""
        keys, bits = np.asarray(keys, np.int64), np.asarray(bits, np.int32)
        if keys.shape != (self.size,) or bits.shape != (self.size,):
            raise ValueError(f"expected {self.size} keys and bits, got {keys.shape} and {bits.shape}")
        if self.size > 1 and not np.all(keys[1:] > keys[:-1]):
            raise ValueError("lexicon keys must be sorted and unique")
        if (profile is None) != (not self.profile_vocab):
            raise ValueError("a character profile is needed exactly when profile_vocab > 0")
        if not self.built:
            self.build()
        self.keys.assign(keys)
        self.bits.assign(bits)
        if profile is not None:
            profile = np.asarray(profile, np.float32)
            if profile.shape != tuple(self.profile.shape):
                raise ValueError(f"expected a profile of shape {tuple(self.profile.shape)}, got {profile.shape}")
            self.profile.assign(profile)

    def call(self, input_ids):
        batch, seq = tf.shape(input_ids)[0], tf.shape(input_ids)[1]
        # Padding on the right lets every n-gram length have at least one start, so all the
        # shifted maps below have the same length (seq + max_len); cut back at the end.
        ids = tf.pad(input_ids, [[0, 0], [0, self.max_len]])
        class_masks = tf.constant([1 << c for c in range(self.num_classes)], tf.int32)
        keys, class_bits = tf.convert_to_tensor(self.keys), tf.convert_to_tensor(self.bits)
        begins = tf.zeros([batch, seq + self.max_len, self.num_classes], tf.float32)
        middles, ends = begins, begins
        for n, ngram in zip(range(2, self.max_len + 1), ngram_keys(ids, self.max_len)):
            flat = tf.reshape(ngram, [-1])
            at = tf.minimum(tf.searchsorted(keys, flat), self.size - 1)
            bits = tf.where(tf.equal(tf.gather(keys, at), flat), tf.gather(class_bits, at), 0)
            # hit[b, t, c]: a class-c word of length n starts at position t.
            hit = tf.cast(tf.bitwise.bitwise_and(bits[:, None], class_masks) > 0, tf.float32)
            hit = tf.reshape(hit, [batch, -1, self.num_classes])
            begins = tf.maximum(begins, tf.pad(hit, [[0, 0], [0, n - 1], [0, 0]]))
            ends = tf.maximum(ends, tf.pad(hit, [[0, 0], [n - 1, 0], [0, 0]]))
            for inner in range(1, n - 1):
                middles = tf.maximum(middles, tf.pad(hit, [[0, 0], [inner, n - 1 - inner], [0, 0]]))
        # [batch, seq, classes, roles] → channel c·3 + r
        features = tf.stack([begins, middles, ends], axis=-1)[:, :seq]
        features = tf.reshape(features, [batch, seq, 3 * self.num_classes])
        if self.profile is None:
            return features
        # Ids past the table (none in a model trained with it) read as the empty profile.
        ids = tf.cast(input_ids, tf.int32)
        ids = tf.where(ids < self.profile_vocab, ids, tf.zeros_like(ids))
        return tf.concat([features, tf.gather(self.profile, ids)], axis=-1)
