"""Ensembles (`Tagger(members=N)`, `--ensemble N`): scores averaged over members, one loss per
member, a one-member tagger unchanged, and a trained ensemble exported and served like any model.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import tensorflow as tf

from albert_ner.model.config import EncoderConfig
from albert_ner.model.tagger import Tagger
from albert_ner.model_dir import ModelDir


def _tagger(members: int, head: str = "crf") -> Tagger:
    config = EncoderConfig.resolve("chars", vocab_size=60)
    tagger = Tagger(config, num_tags=5, head=head, cls_id=3, sep_id=4, lstm_units=8,
                    bigram_buckets=64, bigram_size=4, members=members)
    tagger.build_variables()
    return tagger


def _framed(rng, batch=3, seq=12):
    ids = rng.integers(5, 60, size=(batch, seq)).astype(np.int32)
    ids[:, 0], ids[:, -1] = 3, 4
    return tf.constant(ids)


@pytest.mark.parametrize("head", ["crf", "softmax"])
def test_scores_are_the_members_mean_and_the_loss_the_mean_of_their_losses(head):
    tagger = _tagger(3, head)
    rng = np.random.default_rng(0)
    ids = _framed(rng)
    tags = tf.constant(rng.integers(0, 5, size=(3, 10)), tf.int32)
    members = tf.unstack(tagger(ids, each_member=True))
    assert len(members) == 3
    # Independently initialised members score differently.
    assert not np.allclose(members[0].numpy(), members[1].numpy())
    np.testing.assert_allclose(tagger(ids).numpy(), np.mean([m.numpy() for m in members], axis=0), rtol=1e-6)

    lengths = Tagger.char_lengths(ids)
    if head == "crf":
        each = [-tagger.crf.log_likelihood(m, tags, lengths).numpy() for m in members]
    else:
        each = [tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tags, logits=m), axis=1).numpy()
                for m in members]
    np.testing.assert_allclose(tagger.sentence_losses(ids, tags, training=False).numpy(),
                               np.mean(each, axis=0), rtol=1e-5)


def _paths(tagger) -> list[str]:
    # Models and dropout RNG states are named by process-wide counters (tagger_4/…,
    # seed_generator_3/…): the numbers are not compared.
    return [re.sub(r"(tagger|seed_generator)_\d+", r"\1", v.path) for v in tagger.variables]


def test_a_one_member_tagger_is_the_plain_model():
    plain, ensemble = _tagger(1), _tagger(2)
    paths = _paths(plain)
    assert not any("member" in p for p in paths)
    # The first member is the plain model's own layers, in the same order; the others follow.
    assert _paths(ensemble)[: len(paths)] == paths
    assert any(p.startswith("tagger/member2/encoder/") for p in _paths(ensemble))


def test_members_must_be_positive():
    with pytest.raises(ValueError, match="members must be at least 1"):
        _tagger(0)


def test_the_recipe_ensembles_small_sets_of_the_bilstm_crf_only():
    from albert_ner.train import recipe
    from albert_ner.train.loop import TrainArgs

    chars = TrainArgs(train_file="t", output_dir="o", model_config="chars", lexicon="jieba")
    assert recipe.fill_defaults(chars, False, "chars", train_sentences=1500)["ensemble"] == recipe.SMALL_DATA_ENSEMBLE > 1
    assert recipe.fill_defaults(chars, False, "chars", train_sentences=46_000)["ensemble"] == 1
    assert recipe.fill_defaults(chars, False, "albert", train_sentences=1500)["ensemble"] == 1
    # ... with a smaller bigram table (few distinct bigrams; each step updates the whole table).
    assert recipe.fill_defaults(chars, False, "chars", train_sentences=1500)["bigram_buckets"] == recipe.SMALL_DATA_BIGRAM_BUCKETS
    assert recipe.fill_defaults(chars, False, "chars", train_sentences=46_000)["bigram_buckets"] == 1 << 18
    mine = TrainArgs(train_file="t", output_dir="o", ensemble=2)
    assert "ensemble" not in recipe.fill_defaults(mine, False, "chars", train_sentences=1500)
    assert "× 2 (an ensemble" in recipe.describe(TrainArgs(**{**vars(chars), "ensemble": 2}), pretrained=False)
    with pytest.raises(ValueError, match="ensemble must be at least 1"):
        TrainArgs(train_file="t", output_dir="o", ensemble=0)


@pytest.mark.slow
def test_a_trained_ensemble_exports_and_predicts_like_its_keras_model(synthetic_data, tmp_path):
    from albert_ner.data.readers import read_corpus
    from albert_ner.export import export_model_dir
    from albert_ner.predict import Predictor
    from albert_ner.train.loop import Trainer, TrainArgs

    out = tmp_path / "ensemble"
    args = TrainArgs(train_file=str(synthetic_data["train"]), dev_file=str(synthetic_data["dev"]),
                     output_dir=str(out), ensemble=2, lstm_units=16, bigram_buckets=1024, bigram_size=8,
                     lexicon="none", max_steps=200, eval_every=100, log_every=100, batch_size=16,
                     max_seq_length=40, seed=3)
    trainer = Trainer(args)
    final = trainer.run()
    assert final["entity_f1"] > 0.5, final
    md = ModelDir(out)
    assert json.loads(md.config.read_text())["members"] == 2
    assert md.tagger_options()["members"] == 2

    texts = [e.text for e in read_corpus(synthetic_data["dev"]).examples][:40]
    exported = Predictor.from_model_dir(out).predict(texts)
    # The SavedModel runs the same averaged scores as the Keras ensemble that was selected.
    keras_tags = Predictor(
        lambda ids, lengths: trainer.model.predict_tags(ids, lengths, trainer.window, trainer.stride).numpy(),
        trainer.tokenizer, trainer.tagset,
    ).predict(texts)
    assert [x.entities for x in keras_tags] == [x.entities for x in exported]  # scores aside
    export_model_dir(out)  # rebuilt from model_config.json + weights.npz
    again = Predictor.from_model_dir(out).predict(texts)
    assert [x.entities for x in again] == [x.entities for x in exported]


def test_members_hide_different_shares_of_characters():
    config = EncoderConfig.resolve("chars", vocab_size=60)
    tagger = Tagger(config, num_tags=5, cls_id=3, sep_id=4, lstm_units=4, unk_dropout=0.4, members=4)
    np.testing.assert_allclose(tagger.member_unk_dropout, [0.2, 0.4 * (0.5 + 1 / 3), 0.4 * (0.5 + 2 / 3), 0.6])
    assert Tagger(config, num_tags=5, unk_dropout=0.4).member_unk_dropout == [0.4]
    assert max(Tagger(config, num_tags=5, unk_dropout=0.8, members=3).member_unk_dropout) == 0.9
