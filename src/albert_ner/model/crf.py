"""A linear-chain conditional random field in plain TensorFlow, as a Keras 3 layer.

The CRF sits on top of the encoder: the encoder produces one score per (character, tag) pair,
the *emissions*, and the CRF adds a score for every pair of consecutive tags, the
*transitions*, plus a score for the first tag (`start_transitions`) and the last tag
(`end_transitions`). The score of a tag path y_0..y_{n-1} over a sentence of length n is

    start[y_0] + sum_t emissions[t, y_t] + sum_{t>0} transitions[y_{t-1}, y_t] + end[y_{n-1}]

Training maximises log p(gold path) = score(gold) - log Z, where log Z (the *log-partition*)
is the log-sum-exp of the scores of all K^n paths, computed with the forward algorithm in
O(n K^2). Decoding finds the best path with the Viterbi algorithm.

Every recursion over time is a `tf.scan`, never a Python loop, so the layer works in
`tf.function` with a dynamic sequence length and under `tf.distribute` strategies.

Padding is described by `lengths` (not by a boolean mask: a call argument named `mask` would
make Keras 3 start its implicit masking machinery). Positions `t >= lengths[b]` are ignored.

Transition constraints (for instance "I-PER may not follow O" in BIO) are optional. They are
applied as a large finite additive penalty, `FORBIDDEN_PENALTY = -1e4`, rather than -inf:
  * with -inf, log-sum-exp over a row that is entirely forbidden gives -inf and its gradient
    is NaN (inf - inf), and padded batches hit such rows easily;
  * -1e4 is far below any real path score, so exp(-1e4 + s) underflows to exactly 0 in float32
    next to an allowed path, which makes forbidden paths contribute nothing to log Z and never
    win the Viterbi max, while every value and gradient stays finite.
The same penalty is used in the gold-path score, the log-partition and Viterbi, so the
log-likelihood stays <= 0. Gold paths should respect the constraints; one that does not simply
gets a very low (but finite) likelihood.

All weights and all arithmetic are float32, even under a mixed-precision policy: the
log-sum-exp of long sums of scores loses too much precision in bf16/fp16.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

# Additive score of a forbidden transition; see the module docstring for why it is finite.
FORBIDDEN_PENALTY = -1e4


@keras.saving.register_keras_serializable(package="albert_ner")
class CRF(keras.layers.Layer):
    """Linear-chain CRF with float32 transition weights.

    Weights (all float32):
      transitions [K, K]: score of moving from tag i (row) to tag j (column).
      start_transitions [K]: score of a sentence starting with tag k.
      end_transitions [K]: score of a sentence ending with tag k.
      transition_penalty [K, K], start_penalty [K], end_penalty [K]: non-trainable, 0 where
        allowed and FORBIDDEN_PENALTY where forbidden; all zeros until
        `set_allowed_transitions` is called. They are weights (not Python constants) so that
        the constraints are saved and restored with the checkpoint together with the rest.

    Calling the layer, `crf(emissions, lengths)`, runs Viterbi and returns the best tag
    path [B, T] int32. Training uses `-crf.log_likelihood(emissions, tags, lengths)`.

    Args:
      num_tags: K, the number of tags.
      initializer: initializer of the three trainable weights; zeros by default, which is a
        neutral start (the CRF then decodes the per-character argmax) and deterministic.
      name: layer name.
    """

    def __init__(self, num_tags: int, initializer="zeros", name: str = "crf", **kwargs):
        # Always float32, whatever the global policy: see the module docstring.
        kwargs["dtype"] = "float32"
        super().__init__(name=name, **kwargs)
        if num_tags < 1:
            raise ValueError(f"num_tags must be >= 1, got {num_tags}")
        self.num_tags = int(num_tags)
        self.initializer = keras.initializers.get(initializer)
        k = self.num_tags
        # Shapes depend only on num_tags, so the weights are created here and the layer is
        # usable (log_likelihood, viterbi_decode) before it has ever been called.
        self.transitions = self.add_weight(
            shape=(k, k), initializer=self.initializer, dtype="float32", name="transitions"
        )
        self.start_transitions = self.add_weight(
            shape=(k,), initializer=self.initializer, dtype="float32", name="start_transitions"
        )
        self.end_transitions = self.add_weight(
            shape=(k,), initializer=self.initializer, dtype="float32", name="end_transitions"
        )
        self.transition_penalty = self.add_weight(
            shape=(k, k), initializer="zeros", dtype="float32", trainable=False,
            name="transition_penalty",
        )
        self.start_penalty = self.add_weight(
            shape=(k,), initializer="zeros", dtype="float32", trainable=False,
            name="start_penalty",
        )
        self.end_penalty = self.add_weight(
            shape=(k,), initializer="zeros", dtype="float32", trainable=False,
            name="end_penalty",
        )
        self.built = True

    # ------------------------------------------------------------------ constraints

    def set_allowed_transitions(self, allowed, allowed_start=None, allowed_end=None) -> None:
        """Forbid some transitions, first tags and last tags.

        Args:
          allowed: bool array [K, K]; allowed[i, j] is True when tag j may follow tag i.
          allowed_start: bool array [K]; tags a sentence may start with (None: all).
          allowed_end: bool array [K]; tags a sentence may end with (None: all).
        """
        k = self.num_tags
        allowed = np.asarray(allowed, dtype=bool)
        allowed_start = np.ones(k, bool) if allowed_start is None else np.asarray(allowed_start, bool)
        allowed_end = np.ones(k, bool) if allowed_end is None else np.asarray(allowed_end, bool)
        for arr, shape, what in (
            (allowed, (k, k), "allowed"),
            (allowed_start, (k,), "allowed_start"),
            (allowed_end, (k,), "allowed_end"),
        ):
            if arr.shape != shape:
                raise ValueError(f"{what} must have shape {shape}, got {arr.shape}")

        def penalty(a):
            return np.where(a, 0.0, FORBIDDEN_PENALTY).astype(np.float32)

        self.transition_penalty.assign(penalty(allowed))
        self.start_penalty.assign(penalty(allowed_start))
        self.end_penalty.assign(penalty(allowed_end))

    def _scores(self):
        """Effective (trainable + penalty) transition, start and end scores, float32.

        Returns:
          (transitions [K, K], start [K], end [K])
        """
        trans = tf.convert_to_tensor(self.transitions) + tf.convert_to_tensor(self.transition_penalty)
        start = tf.convert_to_tensor(self.start_transitions) + tf.convert_to_tensor(self.start_penalty)
        end = tf.convert_to_tensor(self.end_transitions) + tf.convert_to_tensor(self.end_penalty)
        return trans, start, end

    # ------------------------------------------------------------------ inputs

    def _prepare(self, emissions, lengths):
        """Cast inputs, pad T to at least 1 and clip lengths into [0, T].

        Padding a T == 0 batch to one (ignored) step lets the recursions below always read
        position 0 without a special case.

        Returns:
          (emissions [B, T', K] float32, lengths [B] int32, T) with T' = max(T, 1) and T the
          original (dynamic) length.
        """
        emissions = tf.cast(tf.convert_to_tensor(emissions), tf.float32)  # [B, T, K]
        seq_len = tf.shape(emissions)[1]
        emissions = tf.pad(emissions, [[0, 0], [0, tf.maximum(0, 1 - seq_len)], [0, 0]])
        lengths = tf.cast(tf.convert_to_tensor(lengths), tf.int32)  # [B]
        lengths = tf.clip_by_value(lengths, 0, seq_len)
        return emissions, lengths, seq_len

    # ------------------------------------------------------------------ likelihood

    def log_partition(self, emissions, lengths):
        """log Z: log-sum-exp of the scores of all tag paths (forward algorithm).

        Args:
          emissions: [B, T, K] float (any float dtype; computed in float32).
          lengths: [B] int, number of valid positions of each sequence.

        Returns:
          [B] float32; 0 for sequences of length 0.
        """
        emissions, lengths, _ = self._prepare(emissions, lengths)
        trans, start, end = self._scores()
        time_major = tf.transpose(emissions, [1, 0, 2])  # [T, B, K]
        steps = tf.range(tf.shape(time_major)[0])  # [T]

        def step(alpha, inputs):
            # alpha [B, K]: log-sum-exp of all partial paths ending in each tag at t - 1.
            t, emit = inputs  # emit [B, K]
            # [B, K_from, 1] + [K_from, K_to] -> reduce over K_from -> [B, K_to]
            moved = tf.reduce_logsumexp(alpha[:, :, None] + trans[None], axis=1) + emit
            new = tf.where(tf.equal(t, 0), start[None] + emit, moved)
            # Past the end of a sequence, alpha is carried unchanged.
            active = (t < lengths)[:, None]  # [B, 1]
            return tf.where(active | tf.equal(t, 0), new, alpha)

        alpha0 = tf.zeros_like(time_major[0])  # [B, K], replaced at t == 0
        alphas = tf.scan(step, (steps, time_major), initializer=alpha0)  # [T, B, K]
        log_z = tf.reduce_logsumexp(alphas[-1] + end[None], axis=1)  # [B]
        return tf.where(lengths > 0, log_z, tf.zeros_like(log_z))

    def sequence_score(self, emissions, tags, lengths):
        """Score of the given tag paths (same constraints penalty as log Z).

        Args:
          emissions: [B, T, K] float.
          tags: [B, T] int; values at positions >= length are ignored (any value).
          lengths: [B] int.

        Returns:
          [B] float32; 0 for sequences of length 0.
        """
        emissions, lengths, seq_len = self._prepare(emissions, lengths)
        trans, start, end = self._scores()
        k = self.num_tags
        tags = tf.cast(tf.convert_to_tensor(tags), tf.int32)  # [B, T]
        # Pad like the emissions, and clip so that padding values (e.g. -1) gather safely.
        tags = tf.pad(tags, [[0, 0], [0, tf.maximum(0, 1 - seq_len)]])
        tags = tf.clip_by_value(tags, 0, k - 1)
        positions = tf.range(tf.shape(tags)[1])  # [T]
        valid = positions[None, :] < lengths[:, None]  # [B, T]
        valid_f = tf.cast(valid, tf.float32)
        has_tokens = lengths > 0  # [B]

        emit = tf.gather(emissions, tags[..., None], batch_dims=2)[..., 0]  # [B, T]
        emit_score = tf.reduce_sum(emit * valid_f, axis=1)  # [B]

        pairs = tf.stack([tags[:, :-1], tags[:, 1:]], axis=-1)  # [B, T-1, 2]
        trans_score = tf.reduce_sum(tf.gather_nd(trans, pairs) * valid_f[:, 1:], axis=1)  # [B]

        first = tags[:, 0]  # [B]
        last = tf.gather(tags, tf.maximum(lengths - 1, 0), batch_dims=1)  # [B]
        edge_score = tf.gather(start, first) + tf.gather(end, last)  # [B]
        edge_score = tf.where(has_tokens, edge_score, tf.zeros_like(edge_score))
        return emit_score + trans_score + edge_score

    def log_likelihood(self, emissions, tags, lengths):
        """log p(tags | emissions) = score(tags) - log Z.

        Args:
          emissions: [B, T, K] float (any float dtype; computed in float32).
          tags: [B, T] int gold tags.
          lengths: [B] int.

        Returns:
          [B] float32, <= 0; exactly 0 for sequences of length 0. The training loss is
          typically `-tf.reduce_mean(crf.log_likelihood(...))`.
        """
        return self.sequence_score(emissions, tags, lengths) - self.log_partition(emissions, lengths)

    # ------------------------------------------------------------------ decoding

    def viterbi_decode(self, emissions, lengths):
        """Best tag path of each sequence.

        Args:
          emissions: [B, T, K] float.
          lengths: [B] int.

        Returns:
          tags: [B, T] int32, 0 at positions >= length.
          best_score: [B] float32, the score of that path (0 for length 0).
        """
        emissions, lengths, seq_len = self._prepare(emissions, lengths)
        trans, start, end = self._scores()
        k = self.num_tags
        time_major = tf.transpose(emissions, [1, 0, 2])  # [T, B, K]
        steps = tf.range(tf.shape(time_major)[0])  # [T]
        batch = tf.shape(time_major)[1]
        # "Stay on the same tag": the back-pointer used at t == 0 and past the end, so that
        # backtracking walks through padding without changing tag.
        identity = tf.tile(tf.range(k)[None], [batch, 1])  # [B, K]

        def step(carry, inputs):
            score, _ = carry  # score [B, K]: best partial path ending in each tag
            t, emit = inputs  # emit [B, K]
            cand = score[:, :, None] + trans[None]  # [B, K_from, K_to]
            moved = tf.reduce_max(cand, axis=1) + emit  # [B, K_to]
            pointer = tf.argmax(cand, axis=1, output_type=tf.int32)  # [B, K_to]
            is_first = tf.equal(t, 0)
            new_score = tf.where(is_first, start[None] + emit, moved)
            new_pointer = tf.where(is_first, identity, pointer)
            active = (t < lengths)[:, None] | is_first  # [B, 1]
            return tf.where(active, new_score, score), tf.where(active, new_pointer, identity)

        init = (tf.zeros_like(time_major[0]), identity)
        scores, pointers = tf.scan(step, (steps, time_major), initializer=init)
        # scores [T, B, K]; pointers [T, B, K]: pointers[t, b, j] = best tag at t-1 given j at t.
        final = scores[-1] + end[None]  # [B, K]
        best_last = tf.argmax(final, axis=1, output_type=tf.int32)  # [B]
        best_score = tf.reduce_max(final, axis=1)  # [B]

        # Backtrack. Element t of the reversed scan must map tag_t -> tag_t, so feed it the
        # pointers of t + 1 (shifted by one), and the identity at the last position.
        shifted = tf.concat([pointers[1:], identity[None]], axis=0)  # [T, B, K]

        def back(tag_next, pointer):
            return tf.gather(pointer, tag_next, batch_dims=1)  # [B]

        path = tf.scan(back, shifted, initializer=best_last, reverse=True)  # [T, B]
        path = tf.transpose(path)[:, :seq_len]  # [B, T], drop the T == 0 padding
        valid = tf.range(seq_len)[None, :] < lengths[:, None]  # [B, T]
        path = tf.where(valid, path, tf.zeros_like(path))
        best_score = tf.where(lengths > 0, best_score, tf.zeros_like(best_score))
        return path, best_score

    # ------------------------------------------------------------------ Keras API

    def call(self, emissions, lengths):
        """Viterbi decoding.

        Args:
          emissions: [B, T, K] float.
          lengths: [B] int.

        Returns:
          [B, T] int32 best tag paths, 0 past each length.
        """
        tags, _ = self.viterbi_decode(emissions, lengths)
        return tags

    def get_config(self) -> dict:
        config = super().get_config()
        config.pop("dtype", None)  # always float32, forced in __init__
        config.update(
            num_tags=self.num_tags, initializer=keras.initializers.serialize(self.initializer)
        )
        return config
