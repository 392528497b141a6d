"""Entity confidence scores: constrained forward-backward against brute-force enumeration.

For every entity that `TagSet.decode` reads from a tag path y, the score must equal the sum,
over all K^n tag paths z, of p(z) for the paths that carry y's tags on the span and whose
neighbouring tags do not continue it (the event defined in `model.crf`).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf

from albert_ner.data.schemes import TagSet
from albert_ner.model.crf import CRF, continuation_matrix, span_log_probs

TAGSETS = {
    "bio-1": TagSet(["PER"], "bio"),  # K = 3
    "bio-2": TagSet(["LOC", "PER"], "bio"),  # K = 5
    "bioes-1": TagSet(["PER"], "bioes"),  # K = 5
}


def random_crf(rng, tagset: TagSet, constrained: bool) -> CRF:
    k = len(tagset)
    crf = CRF(k)
    crf.transitions.assign(rng.normal(size=(k, k)).astype(np.float32))
    crf.start_transitions.assign(rng.normal(size=k).astype(np.float32))
    crf.end_transitions.assign(rng.normal(size=k).astype(np.float32))
    if constrained:
        crf.set_allowed_transitions(*tagset.allowed_transitions())
    return crf


def effective_weights(crf: CRF):
    return tuple(np.asarray(x.numpy(), np.float64) for x in crf._scores())


def brute_force_span_prob(em, n, y, span, weights, continues):
    """Sum of p(z) over all paths z of length n that contain `span` with y's tags."""
    trans, start, end = weights
    s, e = span.start, span.end - 1  # inclusive
    k = em.shape[1]
    log_scores, hits = [], []
    for z in itertools.product(range(k), repeat=n):
        score = start[z[0]] + end[z[-1]] + sum(em[t, z[t]] for t in range(n))
        score += sum(trans[a, b] for a, b in zip(z[:-1], z[1:]))
        log_scores.append(score)
        same = all(z[t] == y[t] for t in range(s, e + 1))
        left_ok = s == 0 or not continues[z[s - 1], y[s]]
        right_ok = e == n - 1 or not continues[y[e], z[e + 1]]
        hits.append(same and left_ok and right_ok)
    log_scores = np.array(log_scores)
    log_z = np.logaddexp.reduce(log_scores)
    return float(np.exp(log_scores[np.array(hits)] - log_z).sum()) if any(hits) else 0.0


def random_paths(rng, tagset, batch, width, lengths, crf, em, how):
    if how == "viterbi":
        tags, _ = crf.viterbi_decode(em, lengths)
        return tags.numpy()
    return rng.integers(0, len(tagset), size=(batch, width)).astype(np.int32)


@pytest.mark.parametrize("name", sorted(TAGSETS))
@pytest.mark.parametrize("constrained", [False, True])
def test_span_probability_equals_brute_force(name, constrained):
    tagset = TAGSETS[name]
    continues, is_entity = continuation_matrix(tagset.tags, tagset.scheme)
    rng = np.random.default_rng([sorted(TAGSETS).index(name), int(constrained)])
    checked = 0
    for trial in range(8):
        crf = random_crf(rng, tagset, constrained)
        batch, width = 3, 5 if len(tagset) == 3 else 4
        # Strong emissions make decoded entities likely; padding rows are shorter.
        em = (2.0 * rng.normal(size=(batch, width, len(tagset)))).astype(np.float32)
        lengths = np.array([width, int(rng.integers(1, width + 1)), 1], np.int32)
        how = "viterbi" if trial % 2 == 0 else "random"
        y = random_paths(rng, tagset, batch, width, lengths, crf, em, how)
        weights = effective_weights(crf)
        log_probs, begins = span_log_probs(em, y, lengths, *weights, continues, is_entity)
        log_probs, begins = log_probs.numpy(), begins.numpy()
        scores = crf.entity_scores(em, y, lengths, continues, is_entity).numpy()
        assert log_probs.shape == begins.shape == scores.shape == (batch, width)
        for b, n in enumerate(lengths):
            path = y[b, :n].tolist()
            entities = tagset.decode(path)
            # The graph finds exactly the entities the Python decoder reads.
            assert sorted(np.flatnonzero(begins[b]).tolist()) == [e.start for e in entities]
            assert not begins[b, n:].any() and not scores[b, n:].any()
            for entity in entities:
                expected = brute_force_span_prob(em[b].astype(np.float64), n, path, entity, weights, continues)
                got = np.exp(log_probs[b, entity.start])
                np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
                np.testing.assert_allclose(scores[b, entity.start], expected, rtol=1e-5, atol=1e-7)
                checked += 1
            others = [t for t in range(width) if t not in {e.start for e in entities}]
            assert (scores[b, others] == 0).all()
    assert checked >= 10  # the random cases really contained entities


def test_padding_does_not_change_scores():
    tagset = TAGSETS["bioes-1"]
    continues, is_entity = continuation_matrix(tagset.tags, tagset.scheme)
    rng = np.random.default_rng(11)
    crf = random_crf(rng, tagset, constrained=True)
    em = (3.0 * rng.normal(size=(2, 9, len(tagset)))).astype(np.float32)
    lengths = np.array([9, 4], np.int32)
    tags, _ = crf.viterbi_decode(em, lengths)
    both = crf.entity_scores(em, tags, lengths, continues, is_entity).numpy()
    alone = crf.entity_scores(em[1:, :4], tags[1:, :4], lengths[1:], continues, is_entity).numpy()
    # Another batch shape may add in another order: equal to float32 rounding, not to the bit.
    np.testing.assert_allclose(both[1, :4], alone[0], rtol=1e-6, atol=1e-7)
    # Whatever sits in the padded emissions must not matter either.
    noisy = em.copy()
    noisy[1, 4:] = 100.0
    again = crf.entity_scores(noisy, tags, lengths, continues, is_entity).numpy()
    np.testing.assert_array_equal(again, both)


def test_softmax_head_is_the_zero_transition_case():
    """With zero transitions the score is the product of per-character probabilities."""
    tagset = TAGSETS["bio-1"]  # O, B-PER, I-PER
    continues, is_entity = continuation_matrix(tagset.tags, tagset.scheme)
    em = np.log(np.array([[[0.1, 0.8, 0.1], [0.2, 0.1, 0.7], [0.6, 0.1, 0.3]]], np.float64))
    y = np.array([[1, 2, 0]], np.int32)  # B-PER I-PER O: one entity at 0..1
    zeros = (np.zeros((3, 3)), np.zeros(3), np.zeros(3))
    log_probs, begins = span_log_probs(em, y, [3], *zeros, continues, is_entity)
    # p(B) p(I) and the next character not I-PER: 0.8 * 0.7 * (1 - 0.3)
    np.testing.assert_allclose(np.exp(log_probs.numpy()[0, 0]), 0.8 * 0.7 * 0.7, rtol=1e-12)
    assert begins.numpy()[0].tolist() == [True, False, False]


def test_long_sentences_stay_precise_and_in_range():
    tagset = TAGSETS["bio-2"]
    continues, is_entity = continuation_matrix(tagset.tags, tagset.scheme)
    rng = np.random.default_rng(5)
    crf = random_crf(rng, tagset, constrained=True)
    em = (5.0 * rng.normal(size=(1, 800, len(tagset)))).astype(np.float32)

    @tf.function  # one graph instead of 800 eager scan steps
    def decode_and_score(em):
        tags, _ = crf.viterbi_decode(em, [800])
        return tags, crf.entity_scores(em, tags, [800], continues, is_entity)

    tags, scores = decode_and_score(em)
    scores = scores.numpy()[0]
    starts = [e.start for e in tagset.decode(tags.numpy()[0])]
    assert len(starts) > 20
    assert ((scores[starts] > 0) & (scores[starts] <= 1)).all()
    # Short entities decoded with huge margins are near-certain: the score must show it.
    assert scores[starts].max() > 0.99


def test_works_in_tf_function_with_dynamic_shapes():
    tagset = TAGSETS["bio-1"]
    continues, is_entity = continuation_matrix(tagset.tags, tagset.scheme)
    crf = random_crf(np.random.default_rng(2), tagset, constrained=True)

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, 3], tf.float32), tf.TensorSpec([None], tf.int32)
    ])
    def score(em, lengths):
        tags, _ = crf.viterbi_decode(em, lengths)
        return crf.entity_scores(em, tags, lengths, tf.constant(continues), tf.constant(is_entity))

    em = np.random.default_rng(3).normal(size=(2, 6, 3)).astype(np.float32)
    eager_tags, _ = crf.viterbi_decode(em, [6, 2])
    eager = crf.entity_scores(em, eager_tags, [6, 2], continues, is_entity).numpy()
    np.testing.assert_allclose(score(em, tf.constant([6, 2])).numpy(), eager, rtol=1e-6)
    assert score(np.zeros((1, 0, 3), np.float32), tf.constant([0])).shape == (1, 0)


def test_continuation_matrix_follows_the_scheme():
    bio = TagSet(["LOC", "PER"], "bio")
    c, is_entity = continuation_matrix(bio.tags, "bio")
    i = bio.tag_to_id
    assert c[i["B-PER"], i["I-PER"]] and c[i["I-PER"], i["I-PER"]]
    assert not c[i["B-LOC"], i["I-PER"]] and not c[i["O"], i["I-PER"]]
    assert not c[i["B-PER"], i["B-PER"]]
    assert is_entity.tolist() == [t != "O" for t in bio.tags]
    bioes = TagSet(["PER"], "bioes")
    c, _ = continuation_matrix(bioes.tags, "bioes")
    j = bioes.tag_to_id
    assert c[j["B-PER"], j["E-PER"]] and c[j["I-PER"], j["E-PER"]]
    assert not c[j["E-PER"], j["I-PER"]] and not c[j["S-PER"], j["E-PER"]]
    with pytest.raises(ValueError, match="bio or bioes"):
        continuation_matrix(["O"], "bmes")


def test_softmax_tagger_scores_are_products_of_token_probabilities():
    from albert_ner.model.config import EncoderConfig
    from albert_ner.model.tagger import Tagger

    tagset = TAGSETS["bio-1"]  # O, B-PER, I-PER
    continues, is_entity = continuation_matrix(tagset.tags, tagset.scheme)
    rng = np.random.default_rng(0)
    tf.random.set_seed(0)
    tagger = Tagger(EncoderConfig.resolve("micro", vocab_size=200), num_tags=3, head="softmax")
    tagger.build_variables()
    # Large classifier weights so argmax decoding yields entities of several characters.
    kernel = tagger.classifier.kernel
    kernel.assign(kernel.numpy() * 40.0)
    char_ids = rng.integers(5, 60, size=(2, 12)).astype(np.int32)
    lengths = np.array([12, 7], np.int32)
    tags, scores = tagger.predict_tags_and_scores(char_ids, lengths, 10, 5, continues, is_entity)
    emissions = tagger.sentence_emissions(char_ids, lengths, 10, 5).numpy().astype(np.float64)
    probs = np.exp(emissions - np.log(np.exp(emissions).sum(-1, keepdims=True)))  # [batch, chars, 3]
    tags, scores = tags.numpy(), scores.numpy()
    checked = 0
    for b, n in enumerate(lengths):
        for entity in tagset.decode(tags[b, :n]):
            s, e = entity.start, entity.end - 1
            p = np.prod([probs[b, t, tags[b, t]] for t in range(s, e + 1)])
            if s > 0:  # the character before must not continue into y_s
                p *= sum(probs[b, s - 1, k] for k in range(3) if not continues[k, tags[b, s]])
            if e < n - 1:  # nor the one after continue y_e
                p *= sum(probs[b, e + 1, k] for k in range(3) if not continues[tags[b, e], k])
            np.testing.assert_allclose(scores[b, s], p, rtol=1e-5, atol=1e-7)
            checked += 1
    assert checked > 0
