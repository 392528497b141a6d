"""Unseen character bigrams (`model.sequence.KnownBigrams`, `Tagger(known_bigrams=N)`): outside
training a pair the training windows never showed is read as (character, [UNK]); training itself
is unchanged, and the table travels with the model directory and the export.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from albert_ner.model.config import EncoderConfig
from albert_ner.model.sequence import KnownBigrams, bigram_key, known_bigram_keys
from albert_ner.model.tagger import Tagger, member_scores
from albert_ner.model_dir import ModelDir

CLS, SEP, UNK = 3, 4, 1


def test_an_unseen_pair_of_characters_is_paired_with_unk_and_nothing_else_changes():
    keys = known_bigram_keys([[CLS, 5, 6, 7, SEP]], (CLS, SEP, UNK))
    assert keys.tolist() == [5 * (1 << 20) + 6, 6 * (1 << 20) + 7]  # pairs with [CLS]/[SEP] left out
    layer = KnownBigrams(len(keys), (CLS, SEP), UNK)
    layer.set_keys(keys)
    ids = tf.constant([[CLS, 5, 6, 8, 6, 7, SEP, 0], [CLS, 8, UNK, 9, SEP, 0, 0, 0]], tf.int32)
    following = layer(ids).numpy().tolist()
    # (5,6) and (6,7) are known; (6,8) and (8,6) are not; pairs with a special token stay.
    assert following[0] == [5, 6, UNK, UNK, 7, SEP, 0, 0]
    assert following[1] == [8, UNK, 9, SEP, 0, 0, 0, 0]


def test_the_numpy_keys_are_the_graph_keys():
    rng = np.random.default_rng(0)
    rows = [np.concatenate([[CLS], rng.integers(5, 5000, size=20), [SEP]]) for _ in range(5)]
    keys = known_bigram_keys(rows, (CLS, SEP, UNK))
    graph = bigram_key(tf.constant(np.stack(rows)[:, :-2]), tf.constant(np.stack(rows)[:, 1:-1])).numpy()
    assert sorted(set(graph[:, 1:].ravel().tolist())) == keys.tolist()


def test_the_table_checks_what_it_is_given():
    layer = KnownBigrams(2, (CLS, SEP), UNK)
    with pytest.raises(ValueError, match="expected 2"):
        layer.set_keys(np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="sorted"):
        layer.set_keys(np.array([5, 2]))
    with pytest.raises(ValueError, match="at least one"):
        KnownBigrams(0, (CLS, SEP), UNK)
    with pytest.raises(ValueError, match="bigram_buckets"):
        Tagger(EncoderConfig.resolve("chars", vocab_size=60), num_tags=5, known_bigrams=3)


def test_the_tagger_reads_unseen_pairs_as_unk_outside_training_only():
    config = EncoderConfig.resolve("chars", vocab_size=60)
    tagger = Tagger(config, num_tags=5, cls_id=CLS, sep_id=SEP, unk_id=UNK, lstm_units=8,
                    bigram_buckets=64, bigram_size=4, classifier_dropout=0.0, known_bigrams=2)
    tagger.build_variables()
    tagger.known_bigrams.set_keys(known_bigram_keys([[CLS, 10, 11, 12, SEP]], (CLS, SEP, UNK)))
    ids = tf.constant([[CLS, 10, 11, 20, 12, SEP]], tf.int32)  # (11,20) and (20,12) unseen

    def scores(following):
        return member_scores(tagger.encoder, tagger.bigrams, tagger.lstm, tagger.dropout, tagger.classifier,
                             ids, None, False, following).numpy()

    as_seen = scores(None)
    remapped = scores(tf.constant([[10, 11, UNK, UNK, SEP, 0]], tf.int32))
    assert not np.allclose(as_seen, remapped)
    np.testing.assert_allclose(tagger(ids, training=False).numpy(), remapped, rtol=1e-6)
    # In training every pair of the data is in the table: the lookup is skipped.
    np.testing.assert_allclose(tagger(ids, training=True).numpy(), as_seen, rtol=1e-6)


def _train(synthetic_data, out, **options):
    from albert_ner.train.loop import Trainer, TrainArgs

    args = TrainArgs(train_file=str(synthetic_data["train"]), dev_file=str(synthetic_data["dev"]),
                     output_dir=str(out), ensemble=1, lstm_units=16, bigram_buckets=1024, bigram_size=8,
                     lexicon="none", max_steps=150, eval_every=75, log_every=75, batch_size=16,
                     max_seq_length=40, seed=3, **options)
    trainer = Trainer(args)
    trainer.run()
    return trainer


def test_training_is_unchanged_and_the_table_travels_with_the_model(synthetic_data, tmp_path, monkeypatch):
    from albert_ner.data.readers import read_corpus
    from albert_ner.export import export_model_dir
    from albert_ner.predict import Predictor
    from albert_ner.train.loop import Trainer

    with_table = _train(synthetic_data, tmp_path / "with")
    md = ModelDir(tmp_path / "with")
    size = json.loads(md.config.read_text())["known_bigrams"]
    assert size == with_table.model.known_bigrams.size > 100
    assert md.tagger_options()["known_bigrams"] == size

    monkeypatch.setattr(Trainer, "_known_bigrams", lambda self, *a: np.zeros([0], np.int64))
    without = _train(synthetic_data, tmp_path / "without")
    assert without.model.known_bigrams is None
    # Same training: the losses and every weight but the table are bit-identical ...
    losses = [[r["loss"] for r in ModelDir(tmp_path / name).read_metrics()] for name in ("with", "without")]
    assert losses[0] == losses[1]
    table = [v for v in with_table.model.variables if "known_bigrams" in v.path]
    assert len(table) == 1 and table[0] is with_table.model.variables[-1]
    for a, b in zip(with_table.model.variables[:-1], without.model.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())

    # ... while prediction differs on text whose pairs training never saw.
    texts = [e.text for e in read_corpus(synthetic_data["test"]).examples][:80]
    exported = Predictor.from_model_dir(tmp_path / "with").predict(texts)
    keras = Predictor(
        lambda ids, lengths: with_table.model.predict_tags(ids, lengths, with_table.window, with_table.stride).numpy(),
        with_table.tokenizer, with_table.tagset,
    ).predict(texts)
    assert [x.entities for x in exported] == [x.entities for x in keras]
    plain = Predictor(
        lambda ids, lengths: without.model.predict_tags(ids, lengths, without.window, without.stride).numpy(),
        without.tokenizer, without.tagset,
    ).predict(texts)
    assert [x.entities for x in plain] != [x.entities for x in keras]
    export_model_dir(tmp_path / "with")  # rebuilt from model_config.json + weights.npz
    again = Predictor.from_model_dir(tmp_path / "with").predict(texts)
    assert [x.entities for x in again] == [x.entities for x in exported]
