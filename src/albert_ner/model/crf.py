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

Confidence of a decoded entity (`span_log_probs`, `CRF.entity_scores`): the probability, under
the CRF's distribution over tag paths, that the characters s..e carry exactly the decoded
tags y_s..y_e *and* form a whole entity, i.e. the tag before s does not continue into y_s and
the tag after e does not continue y_e. Which tag "continues" which comes from the tag scheme
(`continuation_matrix`: I-X after B-X/I-X in BIO; I-X/E-X after B-X/I-X in BIOES). From the
forward scores alpha and backward scores beta (same penalties as Viterbi):

  log P = log-sum-exp_{k: not continues(k, y_s)} (alpha_{s-1}(k) + trans[k, y_s])   (start[y_s] if s = 0)
          + emissions[s, y_s] + sum_{t=s+1..e} (trans[y_{t-1}, y_t] + emissions[t, y_t])
          + log-sum-exp_{k: not continues(y_e, k)} (trans[y_e, k] + emissions[e+1, k] + beta_{e+1}(k))
                                                                  (end[y_e] if e = n - 1)
          - log Z

For a span that starts with B-/S- the first term is just alpha_s(y_s) - emissions[s, y_s]:
nothing continues into a B- or S- tag. This pass runs in float64: alpha and log Z grow with
the sentence length and their difference (a log-probability near 0) would keep only about
three decimals in float32 on a 700-character sentence.
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
        alphas = forward_scores(tf.transpose(emissions, [1, 0, 2]), lengths, trans, start)  # [T, B, K]
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

    # ------------------------------------------------------------------ confidence

    def entity_scores(self, emissions, tags, lengths, continues, is_entity):
        """Probability of every decoded entity, at the entity's first character.

        Args:
          emissions: [B, T, K] float.
          tags: [B, T] int, the decoded paths (e.g. from `viterbi_decode`).
          lengths: [B] int.
          continues: bool [K, K]; continues[i, j] is True when tag j continues an entity
            open at tag i (`continuation_matrix`).
          is_entity: bool [K]; False only for the outside tag.

        Returns:
          [B, T] float32: at the first character of each entity of `tags` (as
          `TagSet.decode` reads them), the CRF probability of that exact span and type
          (module docstring); 0 everywhere else.
        """
        trans, start, end = self._scores()
        log_probs, begins = span_log_probs(
            emissions, tags, lengths, trans, start, end, continues, is_entity
        )
        return probabilities_at(log_probs, begins)

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


# ---------------------------------------------------------------------- forward-backward


def forward_scores(time_major, lengths, trans, start):
    """Forward (alpha) log-scores of every prefix.

    Args:
      time_major: emissions [T, B, K] (T >= 1), any float dtype; the other tensors match it.
      lengths: [B] int32.
      trans: [K, K] effective transition scores; start: [K].

    Returns:
      [T, B, K]: alphas[t, b, k] = log-sum-exp of the scores of all paths y_0..y_t with
      y_t = k (start, emissions and transitions up to t). Past a sequence's end the last
      value is carried unchanged.
    """
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
    return tf.scan(step, (steps, time_major), initializer=alpha0)  # [T, B, K]


def backward_scores(time_major, lengths, trans, end):
    """Backward (beta) log-scores of every suffix.

    Args:
      time_major: emissions [T, B, K] (T >= 1); lengths [B] int32; trans [K, K]; end [K].

    Returns:
      [T, B, K]: betas[t, b, k] = log-sum-exp over y_{t+1}..y_{n-1} of the rest of the
      path's score given y_t = k (transitions from t on, emissions after t, end score);
      end[k] at t = n - 1 and past the end.
    """
    # Element t of the reversed scan needs the emissions of t + 1.
    next_emit = tf.concat([time_major[1:], tf.zeros_like(time_major[:1])], axis=0)  # [T, B, K]
    steps = tf.range(tf.shape(time_major)[0])  # [T]
    final = tf.broadcast_to(end[None], tf.shape(time_major[0]))  # [B, K]

    def step(beta_next, inputs):
        t, emit = inputs  # emit [B, K_to]: emissions at t + 1
        # [K_from, K_to] + [B, 1, K_to] -> reduce over K_to -> [B, K_from]
        moved = tf.reduce_logsumexp(trans[None] + (emit + beta_next)[:, None, :], axis=2)
        last = (t >= lengths - 1)[:, None]  # [B, 1]: at or past the last character
        return tf.where(last, final, moved)

    return tf.scan(step, (steps, next_emit), initializer=final, reverse=True)  # [T, B, K]


def continuation_matrix(tags, scheme: str) -> tuple[np.ndarray, np.ndarray]:
    """Which tag continues the entity opened by which, the relation the span scores need.

    It mirrors how `data.schemes.TagSet.decode` reads tags: in BIO, I-X continues an entity
    open at B-X or I-X; in BIOES, I-X and E-X do (an E-X closes it; nothing continues E-X or
    S-X). Every other tag, and O, starts a new entity or none.

    Args:
      tags: the tag list of a TagSet ("O", "B-PER", ...), in id order.
      scheme: "bio" or "bioes".

    Returns:
      (continues bool [K, K] indexed [previous, next], is_entity bool [K]).
    """
    if scheme not in ("bio", "bioes"):
        raise ValueError(f"span scores need a bio or bioes tag set, got {scheme!r}")
    inside = ("I",) if scheme == "bio" else ("I", "E")
    parts = [("O", None) if t == "O" else (t[0], t[2:]) for t in tags]
    k = len(parts)
    continues = np.zeros((k, k), bool)
    for i, (p_prev, t_prev) in enumerate(parts):
        for j, (p_next, t_next) in enumerate(parts):
            continues[i, j] = p_prev in ("B", "I") and p_next in inside and t_prev == t_next
    is_entity = np.array([p != "O" for p, _ in parts], bool)
    return continues, is_entity


def span_log_probs(emissions, tags, lengths, trans, start, end, continues, is_entity):
    """log-probability of every entity of `tags`, by constrained forward-backward (float64).

    The formula and the exact event are in the module docstring. A linear-chain CRF with
    zero transition, start and end scores is a per-character softmax, so passing zeros gives
    the same quantity for the softmax head.

    Args:
      emissions: [B, T, K] float.
      tags: [B, T] int, the decoded paths; values past each length are ignored.
      lengths: [B] int.
      trans, start, end: effective scores [K, K], [K], [K] (penalties included).
      continues: bool [K, K], is_entity: bool [K] (`continuation_matrix`).

    Returns:
      (log_probs [B, T] float64, -inf except at entity starts; begins [B, T] bool, True at
      the first character of each entity).
    """
    f64 = tf.float64
    emissions = tf.cast(tf.convert_to_tensor(emissions), f64)  # [B, T, K]
    seq_len = tf.shape(emissions)[1]
    emissions = tf.pad(emissions, [[0, 0], [0, tf.maximum(0, 1 - seq_len)], [0, 0]])
    lengths = tf.clip_by_value(tf.cast(tf.convert_to_tensor(lengths), tf.int32), 0, seq_len)  # [B]
    k = tf.shape(emissions)[2]
    tags = tf.cast(tf.convert_to_tensor(tags), tf.int32)
    tags = tf.pad(tags, [[0, 0], [0, tf.maximum(0, 1 - seq_len)]])
    tags = tf.clip_by_value(tags, 0, k - 1)  # [B, T]
    trans, start, end = (tf.cast(x, f64) for x in (trans, start, end))
    continues = tf.cast(tf.convert_to_tensor(continues), tf.bool)  # [K, K]
    is_entity = tf.cast(tf.convert_to_tensor(is_entity), tf.bool)  # [K]
    neg_inf = tf.constant(-np.inf, f64)

    time_major = tf.transpose(emissions, [1, 0, 2])  # [T, B, K]
    alphas = tf.transpose(forward_scores(time_major, lengths, trans, start), [1, 0, 2])  # [B, T, K]
    betas = tf.transpose(backward_scores(time_major, lengths, trans, end), [1, 0, 2])  # [B, T, K]
    last_alpha = tf.gather(alphas, tf.maximum(lengths - 1, 0), batch_dims=1)  # [B, K]
    log_z = tf.reduce_logsumexp(last_alpha + end[None], axis=1)  # [B]

    positions = tf.range(tf.shape(tags)[1])[None, :]  # [1, T]
    valid = positions < lengths[:, None]  # [B, T]
    is_first = tf.equal(positions, 0)  # [1, T]
    is_last = tf.equal(positions, lengths[:, None] - 1)  # [B, T]
    prev_tags = tf.concat([tags[:, :1], tags[:, :-1]], axis=1)  # y_{t-1} (y_0 at t = 0)
    next_tags = tf.concat([tags[:, 1:], tags[:, -1:]], axis=1)  # y_{t+1} (y_{T-1} at the end)
    continued_in = tf.gather_nd(continues, tf.stack([prev_tags, tags], -1)) & ~is_first  # [B, T]
    continued_out = tf.gather_nd(continues, tf.stack([tags, next_tags], -1)) & ~is_last  # [B, T]
    inside = tf.gather(is_entity, tags) & valid  # [B, T]: part of some entity
    begins = inside & ~continued_in
    ends = inside & ~continued_out

    emit = tf.gather(emissions, tags[..., None], batch_dims=2)[..., 0]  # [B, T]: emissions[t, y_t]
    # Left edge of an entity starting at t: paths up to t - 1 whose last tag does not
    # continue into y_t, then the step into y_t.
    alpha_prev = tf.concat([tf.zeros_like(alphas[:, :1]), alphas[:, :-1]], axis=1)  # [B, T, K]
    into = tf.gather(tf.transpose(trans), tags)  # [B, T, K]: trans[k, y_t]
    barred_in = tf.gather(tf.transpose(continues), tags)  # [B, T, K]: continues[k, y_t]
    left = tf.reduce_logsumexp(tf.where(barred_in, neg_inf, alpha_prev + into), axis=2)
    left = tf.where(is_first, tf.gather(start, tags), left) + emit  # [B, T]
    # Inside an entity: the path's own transition and emission.
    step = tf.gather_nd(trans, tf.stack([prev_tags, tags], -1)) + emit  # [B, T]
    # Right edge of an entity ending at t: every continuation whose first tag does not
    # continue y_t.
    beta_next = tf.concat([betas[:, 1:], tf.zeros_like(betas[:, :1])], axis=1)  # [B, T, K]
    emit_next = tf.concat([emissions[:, 1:], tf.zeros_like(emissions[:, :1])], axis=1)  # [B, T, K]
    out = tf.gather(trans, tags)  # [B, T, K]: trans[y_t, k]
    barred_out = tf.gather(continues, tags)  # [B, T, K]: continues[y_t, k]
    right = tf.reduce_logsumexp(tf.where(barred_out, neg_inf, out + emit_next + beta_next), axis=2)
    right = tf.where(is_last, tf.gather(end, tags), right)  # [B, T]

    zero = tf.zeros_like(emit)
    part = tf.where(inside, tf.where(begins, left, step), zero) + tf.where(ends, right, zero)
    # Sum the parts of each entity: entity number j (1-based, per row) is the segment id;
    # characters outside entities go to segment 0, which is never read.
    number = tf.cumsum(tf.cast(begins, tf.int32), axis=1)  # [B, T]
    segment = tf.where(inside, number, tf.zeros_like(number))
    rows, width = tf.shape(tags)[0], tf.shape(tags)[1] + 1
    flat_ids = tf.reshape(segment + tf.range(rows)[:, None] * width, [-1])
    totals = tf.math.unsorted_segment_sum(tf.reshape(part, [-1]), flat_ids, rows * width)
    totals = tf.reshape(totals, [rows, width])  # [B, T + 1]
    span_scores = tf.gather(totals, number, batch_dims=1)  # [B, T]
    log_probs = tf.where(begins, span_scores - log_z[:, None], neg_inf)
    return log_probs[:, :seq_len], begins[:, :seq_len]


def probabilities_at(log_probs, begins):
    """exp(log_probs) where `begins`, 0 elsewhere, clipped into [0, 1], as float32 [B, T]."""
    probs = tf.clip_by_value(tf.exp(log_probs), 0.0, 1.0)
    return tf.cast(tf.where(begins, probs, tf.zeros_like(probs)), tf.float32)
