"""ALBERT and BERT encoders as Keras 3 layers (TensorFlow backend).

One `Encoder` class covers both, because they differ in two places only:
  * embeddings — ALBERT looks words up at a small width E and projects them to H;
  * layers    — ALBERT runs one shared `TransformerBlock` num_hidden_layers times,
                BERT owns one block per layer.

The sub-layer names mirror the TF1 checkpoint names (`word_embeddings`, `query`, `key`,
`value`, `attention_output`, `intermediate`, ...), and kernels are [in, out] as in TF1, so the
checkpoint loaders can map weights one to one. Numerics follow the reference code: LayerNorm
epsilon 1e-12, additive -10000 attention mask, tanh-approximate GELU for TF1 configs.

Example:
  config = EncoderConfig.resolve("tiny", vocab_size=5000)
  encoder = Encoder(config)
  ids = tf.constant([[101, 872, 1962, 102, 0]])  # [CLS] 你 好 [SEP] [PAD]
  sequence_output = encoder(ids)                 # [1, 5, 312]
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from albert_ner.model.config import EncoderConfig

PAD_ID = 0  # BERT vocabularies put [PAD] at id 0; a character never maps to it.


def gelu(x, approximate: bool):
    """GELU; the TF1 reference uses the tanh approximation, Hugging Face's "gelu" is exact."""
    if approximate:
        cdf = 0.5 * (1.0 + tf.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * tf.pow(x, 3))))
        return x * cdf
    return 0.5 * x * (1.0 + tf.math.erf(x / tf.cast(math.sqrt(2.0), x.dtype)))


def _activation(config: EncoderConfig):
    act = config.hidden_act
    if act == "gelu":
        return lambda x: gelu(x, config.gelu_approximate)
    if act in ("gelu_new", "gelu_fast", "gelu_pytorch_tanh"):
        return lambda x: gelu(x, True)
    return {"relu": tf.nn.relu, "tanh": tf.tanh, "swish": tf.nn.silu}[act]


def _initializer(config: EncoderConfig):
    return keras.initializers.TruncatedNormal(stddev=config.initializer_range)


class TransformerBlock(keras.layers.Layer):
    """Self-attention + feed-forward, post-LN (BERT) or pre-LN (albert_zh `ln_type: preln`)."""

    def __init__(self, config: EncoderConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        h, init = config.hidden_size, _initializer(config)
        self.num_heads = config.num_attention_heads
        self.head_size = h // self.num_heads
        self.query = keras.layers.Dense(h, kernel_initializer=init, name="query")
        self.key = keras.layers.Dense(h, kernel_initializer=init, name="key")
        self.value = keras.layers.Dense(h, kernel_initializer=init, name="value")
        self.attention_output = keras.layers.Dense(h, kernel_initializer=init, name="attention_output")
        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=config.layer_norm_eps, name="attention_norm"
        )
        self.intermediate = keras.layers.Dense(
            config.intermediate_size, kernel_initializer=init, name="intermediate"
        )
        self.output_dense = keras.layers.Dense(h, kernel_initializer=init, name="output_dense")
        self.output_norm = keras.layers.LayerNormalization(
            epsilon=config.layer_norm_eps, name="output_norm"
        )
        self.attention_dropout = keras.layers.Dropout(config.attention_probs_dropout_prob)
        self.hidden_dropout = keras.layers.Dropout(config.hidden_dropout_prob)
        self.activation = _activation(config)

    def _split_heads(self, x):
        # [batch, seq, hidden] -> [batch, heads, seq, head_size]
        b, t = tf.shape(x)[0], tf.shape(x)[1]
        x = tf.reshape(x, [b, t, self.num_heads, self.head_size])
        return tf.transpose(x, [0, 2, 1, 3])

    def _attention(self, x, attention_bias, training):
        q = self._split_heads(self.query(x))
        k = self._split_heads(self.key(x))
        v = self._split_heads(self.value(x))
        scores = tf.matmul(q, k, transpose_b=True) * (1.0 / math.sqrt(self.head_size))
        scores = scores + tf.cast(attention_bias, scores.dtype)  # [batch, heads, seq, seq]
        probs = tf.nn.softmax(scores, axis=-1)
        probs = self.attention_dropout(probs, training=training)
        context = tf.matmul(probs, v)  # [batch, heads, seq, head_size]
        b, t = tf.shape(x)[0], tf.shape(x)[1]
        context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [b, t, -1])
        return self.hidden_dropout(self.attention_output(context), training=training)

    def _feed_forward(self, x, training):
        hidden = self.activation(self.intermediate(x))
        return self.hidden_dropout(self.output_dense(hidden), training=training)

    def call(self, x, attention_bias, training=False):
        if self.config.ln_type == "preln":
            x = x + self._attention(self.attention_norm(x), attention_bias, training)
            return x + self._feed_forward(self.output_norm(x), training)
        x = self.attention_norm(x + self._attention(x, attention_bias, training))
        return self.output_norm(x + self._feed_forward(x, training))


class Embeddings(keras.layers.Layer):
    """Word + position + token-type embeddings, LayerNorm, dropout, and ALBERT's projection."""

    def __init__(self, config: EncoderConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        init = _initializer(config)
        width = config.embedding_size if config.factorised else config.hidden_size
        # brightmart projects right after the lookup, so everything after it lives at H.
        after = config.hidden_size if config.embedding_layout == "brightmart" else width
        self.word_embeddings = keras.layers.Embedding(
            config.vocab_size, width, embeddings_initializer=init, name="word_embeddings"
        )
        self.projection = None
        if config.factorised:
            if config.embedding_layout == "brightmart":
                # albert_zh's `word_embeddings_2` [E, H], no bias.
                self.projection = keras.layers.Dense(
                    config.hidden_size, use_bias=False, kernel_initializer=init,
                    name="word_embeddings_2",
                )
            else:
                # Google's `embedding_hidden_mapping_in` [E, H] with bias, after LayerNorm.
                self.projection = keras.layers.Dense(
                    config.hidden_size, kernel_initializer=init,
                    name="embedding_hidden_mapping_in",
                )
        else:
            after = config.hidden_size
        self.position_embeddings = keras.layers.Embedding(
            config.max_position_embeddings, after, embeddings_initializer=init,
            name="position_embeddings",
        )
        self.token_type_embeddings = keras.layers.Embedding(
            config.type_vocab_size, after, embeddings_initializer=init,
            name="token_type_embeddings",
        )
        self.norm = keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name="norm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)

    def call(self, input_ids, training=False):
        seq_len = tf.shape(input_ids)[1]
        x = self.word_embeddings(input_ids)  # [batch, seq, E or H]
        brightmart = self.projection is not None and self.config.embedding_layout == "brightmart"
        if brightmart:
            x = self.projection(x)
        positions = self.position_embeddings(tf.range(seq_len))[tf.newaxis]  # [1, seq, width]
        # Single-sentence tagging: every token has type 0.
        token_type = self.token_type_embeddings(tf.zeros_like(input_ids))
        x = self.dropout(self.norm(x + positions + token_type), training=training)
        if self.projection is not None and not brightmart:
            x = self.projection(x)
        return x  # [batch, seq, hidden]


class Encoder(keras.layers.Layer):
    """ALBERT (shared block) or BERT (block per layer) over token ids.

    Call args:
      input_ids: int32 [batch, seq], `[CLS] chars [SEP]` then [PAD]=0.
      training: enables dropout.
    Returns:
      the sequence output, [batch, seq, hidden], in the layer's compute dtype.
    """

    def __init__(self, config: EncoderConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.embeddings = Embeddings(config, name="embeddings")
        if config.model_type == "albert":
            self.blocks = [TransformerBlock(config, name="layer_shared")]
        else:
            self.blocks = [
                TransformerBlock(config, name=f"layer_{i}") for i in range(config.num_hidden_layers)
            ]

    def call(self, input_ids, training=False):
        x = self.embeddings(input_ids, training=training)
        not_pad = tf.cast(tf.not_equal(input_ids, PAD_ID), tf.float32)  # [batch, seq]
        # [batch, 1, 1, seq]: 0 where attending is allowed, -10000 on padding (as TF1 BERT).
        attention_bias = (1.0 - not_pad)[:, tf.newaxis, tf.newaxis, :] * -10000.0
        for i in range(self.config.num_hidden_layers):
            block = self.blocks[0] if len(self.blocks) == 1 else self.blocks[i]
            x = block(x, attention_bias, training=training)
        return x
