"""Tests of the linear-chain CRF against brute-force enumeration of every tag path."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from albert_ner.model.crf import CRF


# ----------------------------------------------------------------------------- brute force


def path_score(em, path, trans, start, end):
    """Score of one path over one sequence, numpy float64. em [n, K], path length n >= 1."""
    s = start[path[0]] + end[path[-1]] + sum(em[t, y] for t, y in enumerate(path))
    s += sum(trans[a, b] for a, b in zip(path[:-1], path[1:]))
    return s


def allowed_path(path, allowed, allowed_start, allowed_end):
    return (
        allowed_start[path[0]]
        and allowed_end[path[-1]]
        and all(allowed[a, b] for a, b in zip(path[:-1], path[1:]))
    )


def brute_force(em, n, trans, start, end, constraints=None):
    """(log Z, best path, best score, second best score) over sequence em[:n], n >= 1."""
    k = em.shape[1]
    scored = []
    for path in itertools.product(range(k), repeat=n):
        if constraints is not None and not allowed_path(path, *constraints):
            continue
        scored.append((path_score(em[:n], path, trans, start, end), path))
    scores = np.array([s for s, _ in scored])
    log_z = np.logaddexp.reduce(scores)
    order = np.argsort(-scores)
    second = scores[order[1]] if len(scores) > 1 else -np.inf
    return log_z, scored[order[0]][1], scores[order[0]], second


# ----------------------------------------------------------------------------- helpers


def random_crf(rng, k):
    crf = CRF(k)
    crf.transitions.assign(rng.normal(size=(k, k)).astype(np.float32))
    crf.start_transitions.assign(rng.normal(size=k).astype(np.float32))
    crf.end_transitions.assign(rng.normal(size=k).astype(np.float32))
    return crf


def weights(crf):
    return (
        crf.transitions.numpy().astype(np.float64),
        crf.start_transitions.numpy().astype(np.float64),
        crf.end_transitions.numpy().astype(np.float64),
    )


def random_case(rng):
    k = int(rng.integers(2, 6))
    t = int(rng.integers(1, 6))
    b = int(rng.integers(1, 5))
    em = rng.normal(size=(b, t, k)).astype(np.float32)
    lengths = rng.integers(1, t + 1, size=b)
    lengths[0] = t  # at least one full-length sequence
    if b > 1:
        lengths[-1] = 1  # and one of length 1
    return k, t, em, lengths.astype(np.int32)


def random_constraints(rng, k):
    """Random allowed masks for which at least one path of every length 1..5 exists."""
    while True:
        allowed = rng.random((k, k)) < 0.6
        allowed_start = rng.random(k) < 0.7
        allowed_end = rng.random(k) < 0.7
        # A start tag that is also an end tag with a self-loop gives a path of every length.
        if (allowed_start & allowed_end & np.diag(allowed)).any():
            return allowed, allowed_start, allowed_end


def check_against_brute_force(crf, em, lengths, constraints=None):
    trans, start, end = weights(crf)
    log_z = crf.log_partition(em, lengths).numpy()
    tags, best = crf.viterbi_decode(em, lengths)
    tags, best = tags.numpy(), best.numpy()
    assert tags.dtype == np.int32 and tags.shape == em.shape[:2]
    for i, n in enumerate(lengths):
        bf_z, bf_path, bf_best, bf_second = brute_force(
            em[i].astype(np.float64), n, trans, start, end, constraints
        )
        np.testing.assert_allclose(log_z[i], bf_z, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(best[i], bf_best, rtol=1e-5, atol=1e-5)
        path = tuple(int(y) for y in tags[i, :n])
        if bf_best - bf_second > 1e-4:  # skip the path check only on a float32 near-tie
            assert path == bf_path
        # Whatever the tie-breaking, the decoded path must reach the best score.
        np.testing.assert_allclose(
            path_score(em[i].astype(np.float64), path, trans, start, end), bf_best, atol=1e-4
        )
        if constraints is not None:
            assert allowed_path(path, *constraints)
        assert (tags[i, n:] == 0).all()


# ----------------------------------------------------------------------------- tests


def test_matches_brute_force_on_random_cases():
    rng = np.random.default_rng(0)
    for _ in range(25):
        k, _, em, lengths = random_case(rng)
        check_against_brute_force(random_crf(rng, k), em, lengths)


def test_constraints_match_brute_force_over_allowed_paths():
    rng = np.random.default_rng(1)
    for _ in range(25):
        k, _, em, lengths = random_case(rng)
        crf = random_crf(rng, k)
        constraints = random_constraints(rng, k)
        crf.set_allowed_transitions(*constraints)
        check_against_brute_force(crf, em, lengths, constraints)


def test_constraints_override_strong_emissions():
    # Emissions strongly prefer the forbidden path 0 -> 1; the decoder must avoid it.
    crf = CRF(2)
    crf.set_allowed_transitions(np.array([[True, False], [True, True]]))
    em = np.array([[[10.0, 0.0], [0.0, 10.0]]], np.float32)
    tags, _ = crf.viterbi_decode(em, [2])
    assert tuple(tags.numpy()[0]) != (0, 1)


def test_log_likelihood_is_gold_score_minus_log_partition():
    rng = np.random.default_rng(2)
    k, t, em, lengths = random_case(rng)
    crf = random_crf(rng, k)
    trans, start, end = weights(crf)
    tags = rng.integers(0, k, size=em.shape[:2]).astype(np.int32)
    ll = crf.log_likelihood(em, tags, lengths).numpy()
    for i, n in enumerate(lengths):
        bf_z = brute_force(em[i].astype(np.float64), n, trans, start, end)[0]
        gold = path_score(em[i].astype(np.float64), tags[i, :n], trans, start, end)
        np.testing.assert_allclose(ll[i], gold - bf_z, rtol=1e-5, atol=1e-5)
    assert (ll <= 1e-5).all()
    # Whatever lies past the length (here -1 padding) must not matter.
    padded = tags.copy()
    padded[np.arange(t)[None, :] >= lengths[:, None]] = -1
    np.testing.assert_allclose(crf.log_likelihood(em, padded, lengths).numpy(), ll, atol=1e-6)


def test_length_zero_gives_zero_not_nan():
    rng = np.random.default_rng(3)
    crf = random_crf(rng, 3)
    crf.set_allowed_transitions(*random_constraints(rng, 3))
    em = rng.normal(size=(2, 4, 3)).astype(np.float32)
    lengths = np.array([0, 3], np.int32)
    tags = np.zeros((2, 4), np.int32)
    ll = crf.log_likelihood(em, tags, lengths).numpy()
    assert ll[0] == 0.0 and np.isfinite(ll).all()
    assert crf.log_partition(em, lengths).numpy()[0] == 0.0
    path, best = crf.viterbi_decode(em, lengths)
    assert (path.numpy()[0] == 0).all() and best.numpy()[0] == 0.0
    # An empty time axis is accepted too.
    empty = np.zeros((2, 0, 3), np.float32)
    assert crf.viterbi_decode(empty, [0, 0])[0].shape == (2, 0)
    np.testing.assert_array_equal(crf.log_partition(empty, [0, 0]).numpy(), [0.0, 0.0])


def test_gradients_are_finite():
    rng = np.random.default_rng(4)
    crf = random_crf(rng, 4)
    crf.set_allowed_transitions(*random_constraints(rng, 4))
    em = tf.Variable(rng.normal(size=(3, 5, 4)).astype(np.float32))
    tags = rng.integers(0, 4, size=(3, 5)).astype(np.int32)  # may break constraints
    lengths = np.array([5, 0, 1], np.int32)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_sum(crf.log_likelihood(em, tags, lengths))
    grads = tape.gradient(loss, [em] + crf.trainable_weights)
    assert len(crf.trainable_weights) == 3  # the penalties are not trainable
    for g in grads:
        assert g is not None and np.isfinite(tf.convert_to_tensor(g).numpy()).all()
    # Padding and the empty sequence receive no gradient.
    assert not grads[0].numpy()[1].any()
    assert not grads[0].numpy()[2, 1:].any()


def test_optimisation_increases_log_likelihood():
    rng = np.random.default_rng(5)
    k, t = 3, 5
    crf = CRF(k)
    em = tf.Variable(rng.normal(scale=0.1, size=(4, t, k)).astype(np.float32))
    tags = np.array([[0, 1, 1, 2, 0], [0, 1, 2, 2, 0], [1, 1, 2, 0, 0], [0, 2, 0, 0, 0]], np.int32)
    lengths = np.array([5, 4, 3, 2], np.int32)
    variables = [em] + crf.trainable_weights
    optimizer = keras.optimizers.Adam(learning_rate=0.1)

    def mean_ll():
        return tf.reduce_mean(crf.log_likelihood(em, tags, lengths))

    before = float(mean_ll())
    for _ in range(30):
        with tf.GradientTape() as tape:
            loss = -mean_ll()
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    after = float(mean_ll())
    assert after > before + 1.0
    decoded = crf.viterbi_decode(em, lengths)[0].numpy()
    for i, n in enumerate(lengths):
        np.testing.assert_array_equal(decoded[i, :n], tags[i, :n])


def test_inside_tf_function_with_dynamic_shapes():
    rng = np.random.default_rng(6)
    k = 4
    crf = random_crf(rng, k)
    signature = [
        tf.TensorSpec([None, None, k], tf.float32),
        tf.TensorSpec([None, None], tf.int32),
        tf.TensorSpec([None], tf.int32),
    ]

    @tf.function(input_signature=signature)
    def run(em, tags, lengths):
        path, best = crf.viterbi_decode(em, lengths)
        return crf.log_likelihood(em, tags, lengths), crf.log_partition(em, lengths), path, best

    for b, t in [(2, 5), (3, 1), (1, 3)]:
        em = rng.normal(size=(b, t, k)).astype(np.float32)
        tags = rng.integers(0, k, size=(b, t)).astype(np.int32)
        lengths = rng.integers(1, t + 1, size=b).astype(np.int32)
        graph = run(em, tags, lengths)
        eager = (
            crf.log_likelihood(em, tags, lengths),
            crf.log_partition(em, lengths),
            *crf.viterbi_decode(em, lengths),
        )
        for g, e in zip(graph, eager):
            np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-6, atol=1e-6)
    assert run.experimental_get_tracing_count() == 1  # one graph served every shape


def test_under_distribution_strategy():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        crf = CRF(3)
    em = np.random.default_rng(7).normal(size=(2, 4, 3)).astype(np.float32)
    tags = np.zeros((2, 4), np.int32)
    lengths = np.array([4, 2], np.int32)

    @tf.function
    def step(em, tags, lengths):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(crf.log_likelihood(em, tags, lengths))
        return loss, tape.gradient(loss, crf.trainable_weights)

    loss, grads = strategy.run(step, args=(em, tags, lengths))
    loss = strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
    assert np.isfinite(loss.numpy())
    assert all(np.isfinite(tf.convert_to_tensor(g).numpy()).all() for g in grads)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_outputs_float32(policy):
    previous = keras.mixed_precision.global_policy()
    try:
        keras.mixed_precision.set_global_policy(policy)
        crf = CRF(3)
        assert all(w.dtype == "float32" for w in crf.weights)
        low = "bfloat16" if policy == "mixed_bfloat16" else "float16"
        em = tf.cast(np.random.default_rng(8).normal(size=(2, 4, 3)), low)
        tags = tf.zeros((2, 4), tf.int32)
        lengths = tf.constant([4, 1])
        assert crf.log_likelihood(em, tags, lengths).dtype == tf.float32
        assert crf.log_partition(em, lengths).dtype == tf.float32
        path, best = crf.viterbi_decode(em, lengths)
        assert path.dtype == tf.int32 and best.dtype == tf.float32
        assert crf(em, lengths).dtype == tf.int32
    finally:
        keras.mixed_precision.set_global_policy(previous)


def test_config_round_trip():
    crf = CRF(5, name="my_crf")
    clone = CRF.from_config(crf.get_config())
    assert clone.num_tags == 5 and clone.name == "my_crf"


def test_rejects_bad_constraint_shapes():
    with pytest.raises(ValueError):
        CRF(3).set_allowed_transitions(np.ones((2, 2), bool))
