"""BiLSTM / bigram / char-embedding options, and the time budget (`--max-minutes`)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import tensorflow as tf

from albert_ner.model.config import EncoderConfig
from albert_ner.model.sequence import BiLSTM, BigramEmbedding, bigram_buckets, sequence_lengths
from albert_ner.model.tagger import Tagger
from albert_ner.model_dir import ModelDir
from albert_ner.train.budget import CALIBRATION_STEPS, DEFAULT_RESERVE_SECONDS, TimeBudget
from albert_ner.train.optimizer import WarmupLinearDecay


# ---------------------------------------------------------------------------- layers
def test_bilstm_ignores_padding_in_both_directions():
    """A row's outputs at its real positions do not depend on how much padding follows."""
    rng = np.random.default_rng(0)
    lstm = BiLSTM(units=5)
    x = rng.normal(size=(1, 4, 3)).astype("float32")
    short = lstm(tf.constant(x), tf.constant([4]))
    padded_x = np.concatenate([x, rng.normal(size=(1, 6, 3)).astype("float32")], axis=1)
    long = lstm(tf.constant(padded_x), tf.constant([4]))
    np.testing.assert_allclose(short.numpy(), long.numpy()[:, :4], atol=1e-6)
    # The backward half really runs backwards: its first output depends on the last real input.
    changed = x.copy()
    changed[0, 3] += 1.0
    moved = lstm(tf.constant(changed), tf.constant([4])).numpy()
    assert np.abs(moved[0, 0, 5:] - short.numpy()[0, 0, 5:]).max() > 1e-4  # backward half
    np.testing.assert_allclose(moved[0, 0, :5], short.numpy()[0, 0, :5], atol=1e-6)  # forward half


def test_bigram_hash_is_a_pure_function_of_the_pair():
    ids = tf.constant([[101, 7, 8, 102, 0, 0], [101, 7, 8, 9, 102, 0]])
    buckets = bigram_buckets(ids, 1000).numpy()
    assert buckets.shape == (2, 6) and buckets.min() >= 0 and buckets.max() < 1000
    assert buckets[0, 1] == buckets[1, 1]  # (7, 8) in both rows
    assert buckets[0, 2] != buckets[1, 2]  # (8, 102) vs (8, 9)
    # Spread: 2,000 distinct pairs fall into many of 4,096 buckets.
    pairs = tf.constant(np.arange(2001, dtype=np.int32)[None, :] % 4700 + 1)
    assert len(np.unique(bigram_buckets(pairs, 4096).numpy())) > 1500
    assert BigramEmbedding(1000, 8)(ids).shape == (2, 6, 8)


def test_sequence_lengths_count_framed_tokens():
    assert sequence_lengths(tf.constant([[101, 5, 102, 0], [101, 102, 0, 0]])).numpy().tolist() == [3, 2]


@pytest.mark.parametrize("model_config,lstm,bigrams", [("chars", 8, 16), ("micro", 8, 0), ("micro", 0, 16)])
def test_tagger_variants_decode_whole_sentences(model_config, lstm, bigrams):
    config = EncoderConfig.resolve(model_config, vocab_size=50)
    tagger = Tagger(config, num_tags=5, cls_id=3, sep_id=4, lstm_units=lstm,
                    bigram_buckets=64 if bigrams else 0, bigram_size=bigrams)
    tagger.build_variables()
    ids = tf.constant(np.random.default_rng(1).integers(5, 50, size=(2, 30)), tf.int32)
    tags = tagger.predict_tags(ids, tf.constant([30, 12]), window=10, stride=5)
    assert tags.shape == (2, 30)
    assert int(tf.reduce_max(tags[1, 12:])) == 0  # nothing past a sentence's end


def test_chars_config_has_no_transformer():
    config = EncoderConfig.resolve("chars", vocab_size=10)
    assert (config.model_type, config.num_hidden_layers, config.embedding_size) == ("chars", 0, None)
    assert EncoderConfig.from_dict(config.to_dict()).model_type == "chars"


# ---------------------------------------------------------------------------- the budget
class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_budget_fits_steps_to_the_time_left():
    clock = FakeClock()
    budget = TimeBudget(minutes=1, clock=clock)  # 60 s
    assert budget.steps_that_fit(0) is None  # not calibrated yet
    for _ in range(CALIBRATION_STEPS + 1):
        clock.now += 0.5
        budget.record_step(0.5)
    elapsed = budget.elapsed()
    assert elapsed == pytest.approx(0.5 * (CALIBRATION_STEPS + 1))
    left = 60 - elapsed - min(DEFAULT_RESERVE_SECONDS, 0.2 * 60)
    assert budget.steps_that_fit(11) == 11 + int(left / 0.5)
    # An evaluation that took 4 s: its cost is spread over the steps, and it becomes the reserve.
    clock.now += 4
    budget.record_eval(4.0)
    per_step = 0.5 + 4.0 / (CALIBRATION_STEPS + 1)
    assert budget.seconds_per_step() == pytest.approx(per_step)
    assert budget.reserve() == pytest.approx(4.0 + budget.export_seconds)
    clock.now = 1000.0 + 60 - budget.reserve() + 0.1
    assert budget.should_stop()


def test_budget_counts_earlier_sessions():
    clock = FakeClock()
    assert TimeBudget(minutes=2, already_spent=90, clock=clock).elapsed() == pytest.approx(90)
    with pytest.raises(ValueError, match="max-minutes"):
        TimeBudget(minutes=0)


def test_schedule_refit_moves_the_end():
    schedule = WarmupLinearDecay(1.0, warmup_steps=10, total_steps=100)
    assert float(schedule(55)) == pytest.approx(0.5)
    schedule.fit(10, 1000)
    assert float(schedule(55)) == pytest.approx((1000 - 55) / 990)
    assert float(schedule(5)) == pytest.approx(0.5)


# ---------------------------------------------------------------------------- end to end
def _train(data, out, **options):
    from albert_ner.train.loop import TrainArgs, run_training

    # One model: the recipe's small-data ensemble is tested in test_ensemble.py.
    base = dict(train_file=str(data["train"]), dev_file=str(data["dev"]), output_dir=str(out),
                eval_every=50, log_every=25, batch_size=16, max_seq_length=40, seed=5, ensemble=1)
    return run_training(TrainArgs(**{**base, **options}))


@pytest.mark.slow
def test_bilstm_crf_learns_and_its_config_rebuilds_the_model(synthetic_data, tmp_path):
    from albert_ner.data.readers import read_corpus
    from albert_ner.export import export_model_dir
    from albert_ner.predict import Predictor

    out = tmp_path / "bilstm"
    # The defaults without a checkpoint: chars + bigrams + BiLSTM (smaller here), CRF.
    _train(synthetic_data, out, lstm_units=32, bigram_buckets=4096, bigram_size=16, max_steps=150)
    md = ModelDir(out)
    records = md.read_metrics()
    assert records[-1]["entity_f1"] > records[0]["entity_f1"] and records[-1]["entity_f1"] > 0.5, records
    config = json.loads(md.config.read_text())
    assert (config["lstm_units"], config["bigram_buckets"], config["bigram_size"]) == (32, 4096, 16)
    assert config["encoder"]["model_type"] == "chars"
    args = json.loads(md.training_args.read_text())
    assert args["learning_rate"] == 6e-3 and args["classifier_dropout"] == 0.3  # recipe defaults

    # model_config.json is enough to rebuild the model: re-exporting from weights.npz gives
    # a SavedModel that tags the dev sentences exactly as the one training exported.
    texts = [e.text for e in read_corpus(synthetic_data["dev"]).examples][:40] + [""]
    before = [[e.to_json(x.text) for e in x.entities] for x in Predictor.from_model_dir(out).predict(texts)]
    export_model_dir(out)
    after = [[e.to_json(x.text) for e in x.entities] for x in Predictor.from_model_dir(out).predict(texts)]
    assert before == after
    assert sum(map(len, before)) > 10


@pytest.mark.slow
def test_time_budget_stops_on_time_with_the_schedule_ended(synthetic_data, tmp_path):
    out = tmp_path / "budget"
    started = time.monotonic()
    # A model that traces fast, so the budget (not the first step) dominates.
    _train(synthetic_data, out, model_config="chars", lstm_units=0, bigram_buckets=4096,
           bigram_size=16, max_minutes=0.4)
    wall = time.monotonic() - started
    assert wall < 0.4 * 60 + 15, wall
    md = ModelDir(out)
    state = json.loads((md.checkpoints / "latest" / "state.json").read_text())
    assert state["step"] > CALIBRATION_STEPS + 1, state  # calibrated, then ran to the budget
    # The schedule was fitted: when the time ran out, the learning rate had (nearly) decayed
    # to 0 — at most 15 % of the peak is left when a last evaluation eats the final seconds.
    left = (state["total_steps"] - state["step"]) / (state["total_steps"] - state["warmup_steps"])
    assert 0 <= left <= 0.15, state
    records = md.read_metrics()
    assert records[-1]["step"] == state["step"]  # the last steps were evaluated
    assert (md.saved_model / "saved_model.pb").exists()
    assert json.loads(md.final_metrics.read_text())["best_step"] is not None
