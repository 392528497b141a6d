"""The masked-language-model head and `MaskedLM` (encoder + head) for `albert-ner pretrain`.

The head is the one each vendor pretrained with, so its output layer is *tied* to the
encoder's word embeddings (logits = x · word_embeddings^T + output_bias) and a vendor's
`cls/predictions/*` weights fit it:

  BERT                     dense H→H, activation, LayerNorm(H), · word_embeddings[V, H]^T
  ALBERT, google layout    dense H→E, activation, LayerNorm(E), · word_embeddings[V, E]^T
  ALBERT, brightmart       dense H→H, activation, LayerNorm(H), · word_embeddings_2[E, H]
                           (projected back to E with the tied projection), · word_embeddings^T

Logits are only computed at the masked positions (gathered first): a [batch, seq, vocab]
tensor for a 21,128-entry vocabulary would cost more than the encoder itself.

The no-transformer stack (`model_type` "chars": character embeddings [+ hashed bigrams]
[→ BiLSTM], the default tagger without a checkpoint) pretrains the same way: the head reads the
BiLSTM output and is tied to the character embeddings. Its layers carry the tagger's names
(`encoder`, `bigrams`, `bilstm`), so `train --init-checkpoint` puts every one of them back.
Bigrams are hashed from the *masked* ids, so a masked character never leaks through them.

Example:
  model = MaskedLM(EncoderConfig.resolve("micro", vocab_size=100))
  logits = model(input_ids, positions)              # [batch, predictions, vocab] float32
  loss_sum, correct, count = model.masked_lm_sums(input_ids, positions, labels, weights)
"""

from __future__ import annotations

import keras
import tensorflow as tf

from albert_ner.model.config import EncoderConfig
from albert_ner.model.encoder import _activation
from albert_ner.model.sequence import stack_features, stack_layers


def head_width(config: EncoderConfig) -> int:
    """Width of the head's transform: E for a google-layout factorised ALBERT, else H."""
    if config.factorised and config.embedding_layout == "google":
        return config.embedding_size
    return config.hidden_size


class MaskedLMHead(keras.layers.Layer):
    """Transform + LayerNorm + tied output layer (see module docstring).

    Call args:
      x: [batch, predictions, hidden], the encoder output at the masked positions.
      word_embeddings: the encoder's word-embedding matrix [V, E or H] (tied, not owned here).
      projection: brightmart's `word_embeddings_2` kernel [E, H], or None.
    Returns:
      float32 logits [batch, predictions, V].
    """

    def __init__(self, config: EncoderConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        init = keras.initializers.TruncatedNormal(stddev=config.initializer_range)
        # Sub-layers do not inherit a layer's dtype policy in Keras 3: pass it on.
        self.transform = keras.layers.Dense(
            head_width(config), kernel_initializer=init, dtype=self.dtype_policy, name="transform"
        )
        self.norm = keras.layers.LayerNormalization(
            epsilon=config.layer_norm_eps, dtype=self.dtype_policy, name="norm"
        )
        self.activation = _activation(config)

    def build(self, input_shape):
        self.output_bias = self.add_weight(
            name="output_bias", shape=(self.config.vocab_size,), initializer="zeros", dtype="float32"
        )
        super().build(input_shape)

    def call(self, x, word_embeddings, projection=None):
        # The head runs in float32 (its dtype, see MaskedLM) even under a mixed-precision
        # policy: it is a small share of the compute, and the vocabulary softmax needs it.
        x = tf.cast(x, tf.float32)
        x = self.norm(self.activation(self.transform(x)))  # [batch, P, width]
        if projection is not None:
            x = tf.einsum("bph,eh->bpe", x, tf.cast(projection, tf.float32))  # [batch, P, E]
        logits = tf.einsum("bpe,ve->bpv", x, tf.cast(word_embeddings, tf.float32))
        return logits + self.output_bias  # [batch, P, V]


class MaskedLM(keras.Model):
    """An encoder with a tied masked-LM head; what `albert-ner pretrain` trains.

    Args:
      config: the encoder's config (albert, bert or chars).
      lstm_units, bigram_buckets, bigram_size: the optional BiLSTM and bigram layers between
        encoder and head, as in `model.tagger.Tagger` (0 = none).
    """

    def __init__(self, config: EncoderConfig, lstm_units: int = 0, bigram_buckets: int = 0,
                 bigram_size: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.encoder, self.bigrams, self.lstm = stack_layers(config, lstm_units, bigram_buckets, bigram_size)
        self.mlm = MaskedLMHead(config, dtype="float32", name="mlm")

    def _tied(self):
        if self.config.model_type == "chars":
            return self.encoder.word_embeddings.embeddings, None
        emb = self.encoder.embeddings
        projection = None
        if emb.projection is not None and self.config.embedding_layout == "brightmart":
            projection = emb.projection.kernel  # [E, H]
        return emb.word_embeddings.embeddings, projection

    def build_variables(self) -> None:
        """Creates every variable with one tiny batch (Keras builds lazily)."""
        self(tf.ones([1, 3], tf.int32), tf.ones([1, 1], tf.int32))

    def call(self, input_ids, positions, training=False):
        """Logits at the given positions.

        Args:
          input_ids: int32 [batch, seq], framed `[CLS] chars [SEP] [PAD]…`, masked.
          positions: int32 [batch, P], positions in `input_ids` to predict (padding rows
            point at 0, the [CLS] slot, and get weight 0 in the loss).
        Returns:
          float32 [batch, P, vocab].
        """
        hidden = stack_features(self.encoder, self.bigrams, self.lstm, input_ids, training)
        picked = tf.gather(hidden, positions, batch_dims=1)  # [batch, P, hidden]
        word_embeddings, projection = self._tied()
        return self.mlm(picked, word_embeddings, projection)

    def masked_lm_sums(self, input_ids, positions, label_ids, label_weights, training=False):
        """Summed cross-entropy, correct predictions and prediction count of a batch.

        Args:
          input_ids, positions: as in `call`.
          label_ids: int32 [batch, P], the original ids at `positions`.
          label_weights: float32 [batch, P], 1 for a real prediction, 0 for padding.
        Returns:
          (loss_sum, correct, count): float32 scalars; the MLM loss is loss_sum / count.
        """
        logits = self(input_ids, positions, training=training)  # [batch, P, V]
        xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=label_ids, logits=logits)
        hits = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), label_ids), tf.float32)
        weights = tf.cast(label_weights, tf.float32)
        return (tf.reduce_sum(xent * weights), tf.reduce_sum(hits * weights),
                tf.reduce_sum(weights))
