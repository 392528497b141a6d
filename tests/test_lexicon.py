"""Lexicon features (`model.lexicon`, `text.lexicon`): reading word lists, the in-graph lookup."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from albert_ner.model.config import EncoderConfig
from albert_ner.model.lexicon import LexiconFeatures, ROLES, ngram_keys, word_key
from albert_ner.model.tagger import Tagger
from albert_ner.model_dir import load_weights, save_weights
from albert_ner.text.lexicon import (
    PROFILE_SMOOTHING, LexiconError, character_profile, lexicon_arrays, lexicon_characters,
    parse_line, read_lexicon,
)
from albert_ner.text.tokenizer import CharTokenizer
from albert_ner.text.vocab import Vocab


# ---------------------------------------------------------------------------- hashing
def test_graph_keys_equal_the_numpy_keys():
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 21128, size=(3, 17))
    keys = ngram_keys(tf.constant(ids, tf.int32), max_len=6)
    for n, table in zip(range(2, 7), keys):
        assert table.shape == (3, 17 - n + 1)
        for b in range(3):
            for t in range(17 - n + 1):
                assert int(table[b, t]) == word_key(ids[b, t : t + n])


def test_word_key_rejects_ids_it_cannot_hash():
    with pytest.raises(ValueError, match="2\\*\\*20"):
        word_key([5, 1 << 20])


# ---------------------------------------------------------------------------- the layer
def brute_force_features(ids, words: dict[tuple, int], max_len: int, num_classes: int):
    """B/M/E channels by scanning every span of every row against the word table."""
    batch, seq = ids.shape
    out = np.zeros((batch, seq, num_classes, 3), np.float32)
    for b in range(batch):
        for start in range(seq):
            for n in range(2, max_len + 1):
                bits = words.get(tuple(ids[b, start : start + n]), 0) if start + n <= seq else 0
                for c in range(num_classes):
                    if bits & (1 << c):
                        out[b, start, c, 0] = 1
                        out[b, start + n - 1, c, 2] = 1
                        out[b, start + 1 : start + n - 1, c, 1] = 1
    return out.reshape(batch, seq, 3 * num_classes)


def make_layer(words: dict[tuple, int], max_len: int, num_classes: int) -> LexiconFeatures:
    table = {}
    for ids, bits in words.items():
        table[word_key(ids)] = table.get(word_key(ids), 0) | bits
    keys = np.asarray(sorted(table), np.int64)
    layer = LexiconFeatures(len(keys), max_len, num_classes)
    layer.set_entries(keys, np.asarray([table[k] for k in keys.tolist()], np.int32))
    return layer


def test_layer_marks_begin_middle_end_per_class():
    # ids 5 6 7 = a LOC word, 6 7 = a plain word, 8 9 = PER; classes: word, LOC, PER.
    words = {(5, 6, 7): 0b011, (6, 7): 0b001, (8, 9): 0b101}
    layer = make_layer(words, max_len=4, num_classes=3)
    out = layer(tf.constant([[101, 5, 6, 7, 8, 9, 102, 0]])).numpy()[0].reshape(8, 3, 3)
    word, loc, per = out[:, 0], out[:, 1], out[:, 2]  # [seq, roles B/M/E]
    assert ROLES == ("B", "M", "E")
    np.testing.assert_array_equal(loc[1:4], [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(word[2], [1, 1, 0])  # "6 7" begins where "5 6 7" runs through
    np.testing.assert_array_equal(per[4:6], [[1, 0, 0], [0, 0, 1]])
    assert out[[0, 6, 7]].sum() == 0  # [CLS], [SEP], [PAD]
    assert loc[4:].sum() == 0 and per[:4].sum() == 0


def test_layer_equals_brute_force_on_random_rows():
    rng = np.random.default_rng(7)
    ids = rng.integers(1, 12, size=(4, 25))  # a small alphabet, so words recur
    words = {}
    for _ in range(60):
        n = int(rng.integers(2, 6))
        row, start = int(rng.integers(0, 4)), int(rng.integers(0, 25 - n))
        words[tuple(ids[row, start : start + n])] = int(rng.integers(1, 8))
    words[(40, 41)] = 1  # absent from every row
    layer = make_layer(words, max_len=5, num_classes=3)
    got = layer(tf.constant(ids, tf.int32)).numpy()
    np.testing.assert_array_equal(got, brute_force_features(ids, words, 5, 3))
    # Rows shorter than the longest word, and a single-entry table, still work.
    short = make_layer({(3, 4): 1}, max_len=8, num_classes=1)
    np.testing.assert_array_equal(short(tf.constant([[3, 4]])).numpy()[0], [[1, 0, 0], [0, 0, 1]])


def test_layer_rejects_unsorted_keys():
    layer = LexiconFeatures(2, 4, 1)
    with pytest.raises(ValueError, match="sorted"):
        layer.set_entries(np.array([9, 3]), np.array([1, 1]))


# ---------------------------------------------------------------------------- word lists
def test_line_forms_and_jieba_tags():
    assert parse_line("北京\n", "f:1") == ("北京", None)
    assert parse_line("阿司匹林\t药品\n", "f:2") == ("阿司匹林", "药品")
    assert parse_line("张三 12 nr\n", "f:3") == ("张三", "PER")
    assert parse_line("北京 30 ns", "f:4") == ("北京", "LOC")
    assert parse_line("联合国 9 nt", "f:5") == ("联合国", "ORG")
    assert parse_line("跑步 9 v", "f:6") == ("跑步", None)  # another POS tag: a plain word
    assert parse_line("跑步 9", "f:7") == ("跑步", None)
    assert parse_line("微软 ORG", "f:8") == ("微软", "ORG")
    assert parse_line("   \n", "f:9") is None
    with pytest.raises(LexiconError, match="f:10: expected"):
        parse_line("a\tb\tc", "f:10")
    with pytest.raises(LexiconError, match="f:11: expected"):
        parse_line("张三 nr 12", "f:11")


def test_read_lexicon_merges_types_and_reports_the_line(tmp_path):
    path = tmp_path / "terms.txt"
    path.write_text("北京\tLOC\n北京\n微软\tORG\n跑步 3 v\n\n北京大学\tORG\n", encoding="utf-8")
    lexicon = read_lexicon(path)
    assert lexicon.classes == ("word", "LOC", "ORG")
    assert lexicon.entries == {"北京": 0b011, "微软": 0b101, "跑步": 0b001, "北京大学": 0b101}
    assert lexicon_characters(lexicon) >= {"北", "京", "微", "软"}
    bad = tmp_path / "bad.txt"
    bad.write_text("北京\n上海\tLOC\textra\n", encoding="utf-8")
    with pytest.raises(LexiconError, match="bad.txt:2"):
        read_lexicon(bad)
    with pytest.raises(LexiconError, match="does not exist"):
        read_lexicon(tmp_path / "missing.txt")
    (tmp_path / "latin1.txt").write_bytes("北京\n".encode() + "caf\xe9\n".encode("latin-1"))
    with pytest.raises(LexiconError, match="latin1.txt:2: not UTF-8"):
        read_lexicon(tmp_path / "latin1.txt")
    # Several sources at once: the types of a word are merged.
    (tmp_path / "more.txt").write_text("\ufeff北京\tCITY\n上海\n", encoding="utf-8")
    both = read_lexicon(f"{path},{tmp_path / 'more.txt'}")
    assert both.classes == ("word", "CITY", "LOC", "ORG")
    assert both.entries["北京"] == 0b0111 and both.entries["上海"] == 0b0001
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(LexiconError, match="no words"):
        read_lexicon(tmp_path / "empty.txt")


def test_arrays_skip_unknown_characters_and_other_lengths(tmp_path):
    path = tmp_path / "terms.txt"
    path.write_text("北京\tLOC\n京\n北京市政府\tORG\n北x\n北京大\n", encoding="utf-8")
    tokenizer = CharTokenizer(Vocab.build(["北京市政府大"]))
    keys, bits, report = lexicon_arrays(read_lexicon(path), tokenizer, max_len=4)
    assert list(keys) == sorted(keys) and len(set(keys.tolist())) == len(keys) == 2
    expected = {word_key(tokenizer.encode("北京")): 0b011, word_key(tokenizer.encode("北京大")): 0b001}
    assert dict(zip(keys.tolist(), bits.tolist())) == expected
    assert "left out 2 of other lengths and 1 with characters outside the vocabulary" in report


def test_jieba_dictionary_reads_with_entity_classes():
    pytest.importorskip("jieba")
    lexicon = read_lexicon("jieba")
    assert lexicon.classes == ("word", "LOC", "ORG", "PER")
    assert len(lexicon.entries) > 300_000
    assert lexicon.entries["北京"] & 0b0010  # ns → LOC


def test_vocab_extension_keeps_existing_ids():
    vocab = Vocab.build(["北京北"])
    bigger = vocab.extended({"上", "京", "海", "Ａ"})
    assert bigger.tokens[: len(vocab)] == vocab.tokens
    assert set(bigger.tokens[len(vocab):]) == {"上", "海", "a"}  # width-folded, lower-cased


def test_character_profile_counts_each_role_per_class(tmp_path):
    path = tmp_path / "terms.txt"
    path.write_text("王小明\tPER\n王府井\tLOC\n北京\tLOC\n京\n小x\n", encoding="utf-8")
    lexicon = read_lexicon(path)
    assert lexicon.classes == ("word", "LOC", "PER")
    tokenizer = CharTokenizer(Vocab.build(["王小明府井北京"]))
    profile = character_profile(lexicon, tokenizer)
    assert profile.shape == (len(tokenizer.vocab), 3 * 4) and profile.dtype == np.float32

    def row(char):  # [class, role] with roles B, M, E, S
        return profile[tokenizer.encode(char)[0]].reshape(3, 4)

    # "word" channels: log(1 + count) over the channel's largest count (2 words begin with 王).
    top_begin = np.log1p(2)
    np.testing.assert_allclose(row("王")[0], [1.0, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(row("京")[0], [0, 0, 1.0, 1.0], atol=1e-6)  # ends 北京, is 京
    np.testing.assert_allclose(row("小")[0], [np.log1p(1) / top_begin, 1.0, 0, 0], atol=1e-6)
    # Type channels: the share of those words of the type, smoothed.
    share = 1 / (2 + PROFILE_SMOOTHING)
    np.testing.assert_allclose(row("王")[1:, 0], [share, share], atol=1e-6)  # LOC, PER
    np.testing.assert_allclose(row("明")[2], [0, 0, 1 / (1 + PROFILE_SMOOTHING), 0], atol=1e-6)
    np.testing.assert_allclose(row("京")[1], [0, 0, 1 / (1 + PROFILE_SMOOTHING), 0], atol=1e-6)
    # "x" is outside the vocabulary: the shared [UNK] row learns nothing from it.
    assert not profile[tokenizer.unk_id].any()


def test_layer_profile_is_gathered_per_character_after_the_word_channels():
    layer = make_layer({(5, 6): 0b11}, max_len=3, num_classes=2)
    with_profile = LexiconFeatures(layer.size, 3, 2, profile_vocab=8)
    table = np.arange(8 * 8, dtype=np.float32).reshape(8, 8) / 64
    with_profile.set_entries(layer.keys.numpy(), layer.bits.numpy(), table)
    ids = tf.constant([[5, 6, 7, 1]])
    out = with_profile(ids).numpy()
    assert out.shape == (1, 4, 3 * 2 + 4 * 2) and with_profile.channels == 14
    np.testing.assert_array_equal(out[..., :6], layer(ids).numpy())
    np.testing.assert_array_equal(out[0, :, 6:], table[[5, 6, 7, 1]])
    with pytest.raises(ValueError, match="profile"):
        with_profile.set_entries(layer.keys.numpy(), layer.bits.numpy())


# ---------------------------------------------------------------------------- in the tagger
def test_tagger_lexicon_round_trips_through_weights_and_reads_new_characters_as_unk(tmp_path):
    config = EncoderConfig.resolve("chars", vocab_size=40)
    options = dict(num_tags=5, cls_id=3, sep_id=4, lstm_units=4, bigram_buckets=64, bigram_size=4,
                   lexicon_size=2, lexicon_max_len=3, lexicon_classes=("word", "LOC"),
                   trained_vocab_size=30, unk_id=1)
    tagger = Tagger(config, **options)
    tagger.build_variables()
    keys = np.asarray(sorted([word_key([10, 11]), word_key([35, 36])]), np.int64)
    tagger.lexicon.set_entries(keys, np.asarray([3, 1], np.int32))
    save_weights(tagger, tmp_path / "w.npz")

    again = Tagger(config, **options)
    again.build_variables()
    load_weights(again, tmp_path / "w.npz")
    np.testing.assert_array_equal(again.lexicon.keys.numpy(), keys)
    ids = tf.constant([[3, 10, 11, 12, 4, 0]])
    np.testing.assert_allclose(again(ids).numpy(), tagger(ids).numpy(), atol=1e-6)
    # The lexicon changes the scores: the same ids without the word match differ.
    assert np.abs(tagger(ids).numpy() - tagger(tf.constant([[3, 11, 10, 12, 4, 0]])).numpy()).max() > 0
    # Ids ≥ trained_vocab_size reach the encoder as [UNK]: 37 and 1 score alike when
    # neither is part of a dictionary word.
    np.testing.assert_allclose(tagger(tf.constant([[3, 37, 12, 4]])).numpy(),
                               tagger(tf.constant([[3, 1, 12, 4]])).numpy(), atol=1e-6)


@pytest.mark.slow
def test_training_with_a_word_list_exports_a_model_that_uses_it(synthetic_data, tmp_path):
    from albert_ner.data.readers import read_corpus
    from albert_ner.model_dir import ModelDir
    from albert_ner.predict import Predictor
    from albert_ner.train.loop import TrainArgs, run_training

    dev = read_corpus(synthetic_data["dev"]).examples
    terms = tmp_path / "terms.tsv"
    names = sorted({e.text[s.start:s.end] + "\t" + s.type for e in dev for s in e.entities})
    terms.write_text("\n".join(names) + "\n", encoding="utf-8")
    out = tmp_path / "lex"
    run_training(TrainArgs(
        train_file=str(synthetic_data["train"]), dev_file=str(synthetic_data["dev"]), output_dir=str(out),
        lexicon=str(terms), lexicon_profile=True, ensemble=2, lstm_units=16, bigram_buckets=1024, bigram_size=8, max_steps=60,
        eval_every=60, batch_size=16, max_seq_length=40, seed=5,
    ))
    md = ModelDir(out)
    config = json.loads(md.config.read_text())
    assert config["lexicon_size"] > 0 and config["lexicon_classes"][0] == "word" and config["lexicon_profile"]
    assert config["trained_vocab_size"] <= config["encoder"]["vocab_size"]
    assert config["members"] == 2  # an ensemble's members share the one lexicon layer
    # The SavedModel carries the dictionary: it tags as the weights say after a re-export.
    texts = [e.text for e in dev[:30]]
    before = [[e.to_json(x.text) for e in x.entities] for x in Predictor.from_model_dir(out).predict(texts)]
    from albert_ner.export import export_model_dir

    export_model_dir(out)
    after = [[e.to_json(x.text) for e in x.entities] for x in Predictor.from_model_dir(out).predict(texts)]
    assert before == after


# ---------------------------------------------------------------------------- mention replacement
def test_mention_replacement_keeps_labels_exact_and_is_seeded(tmp_path):
    from albert_ner.data.augment import REPLACE_SHARE, replace_mentions
    from albert_ner.data.example import Entity, Example

    path = tmp_path / "terms.txt"
    path.write_text("李四\tPER\n王五\tPER\n欧阳修文\tPER\n上海\tLOC\n", encoding="utf-8")
    lexicon = read_lexicon(path)
    examples = [
        Example("张三在北京见到赵六。", [Entity(0, 2, "PER"), Entity(3, 5, "LOC"), Entity(7, 9, "PER")], "f:1"),
        Example("没有实体。", [], "f:3"),
        Example("公司ＡＢＣ", [Entity(2, 5, "ORG")], "f:5"),  # no ORG words: no copy
    ]
    extra = replace_mentions(examples, lexicon, copies=2, seed=1, share=1.0)
    assert len(extra) == 2 and extra == replace_mentions(examples, lexicon, copies=2, seed=1, share=1.0)
    for copy in extra:
        assert copy.entities == examples[0].entities  # same lengths: same offsets and types
        assert copy.text[0:2] in {"李四", "王五"} and copy.text[7:9] in {"李四", "王五"}
        assert copy.text[3:5] == "上海" and copy.text[2] == "在" and copy.text[9:] == "。"
        assert copy.source == "f:1 (mentions replaced)"
    # By default each mention is swapped only sometimes, so the set's own names stay frequent.
    many = replace_mentions(examples, lexicon, copies=400, seed=3)
    kept = sum(copy.text[0:2] == "张三" for copy in many) / len(many)
    assert len(many) == 400 and abs(kept - (1 - REPLACE_SHARE)) < 0.08
    assert {copy.text[3:5] for copy in many} == {"北京", "上海"}
    assert all(c.text == examples[0].text for c in replace_mentions(examples, lexicon, copies=3, seed=3, share=0.0))


def test_recipe_uses_the_lexicon_only_for_the_no_download_model():
    from albert_ner.train.loop import TrainArgs
    from albert_ner.train.recipe import NO_LEXICON, SCRATCH_LEXICON, fill_defaults

    scratch = fill_defaults(TrainArgs(train_file="t", output_dir="o"), pretrained=False, model_type=None)
    assert (scratch["model_config"], scratch["lexicon"]) == ("chars", SCRATCH_LEXICON)
    tiny = TrainArgs(train_file="t", output_dir="o", model_config="tiny")
    assert fill_defaults(tiny, pretrained=False, model_type=None)["lexicon"] == NO_LEXICON
    tuned = TrainArgs(train_file="t", output_dir="o", init_checkpoint="ckpt")
    assert fill_defaults(tuned, pretrained=True, model_type=None)["lexicon"] == NO_LEXICON
    mine = TrainArgs(train_file="t", output_dir="o", lexicon="terms.txt")
    assert "lexicon" not in fill_defaults(mine, pretrained=False, model_type=None)  # kept
    off = TrainArgs(train_file="t", output_dir="o", lexicon=NO_LEXICON)
    assert fill_defaults(off, pretrained=False, model_type=None, train_sentences=100)["augment_mentions"] == 0


def test_recipe_has_a_small_data_regime():
    from albert_ner.train import recipe
    from albert_ner.train.loop import TrainArgs

    args = TrainArgs(train_file="t", output_dir="o")
    small = recipe.fill_defaults(args, False, None, train_sentences=1500)
    assert small["augment_mentions"] == recipe.SMALL_DATA_AUGMENT_MENTIONS > 0
    assert small["lexicon_profile"] is True
    large = recipe.fill_defaults(args, False, None, train_sentences=46_000)
    assert large["augment_mentions"] == 0 and large["lexicon_profile"] is False
    chars = TrainArgs(train_file="t", output_dir="o", model_config="chars", lexicon="jieba")
    assert recipe.fill_defaults(chars, False, "chars", train_sentences=1500)["unk_dropout"] == recipe.SMALL_DATA_UNK_DROPOUT
    assert recipe.fill_defaults(chars, False, "chars", train_sentences=46_000)["unk_dropout"] == recipe.SEQUENCE_UNK_DROPOUT
    assert recipe.fill_defaults(chars, False, "albert", train_sentences=1500)["unk_dropout"] == 0.0
    described = recipe.describe(TrainArgs(**{**vars(chars), "augment_mentions": 8, "unk_dropout": 0.4,
                                             "lstm_units": 128, "bigram_buckets": 0}), pretrained=False)
    assert "lexicon jieba" in described and "8 mention-replaced copies" in described and "dropout 0.4" in described


def test_mention_replacement_without_a_lexicon_is_a_clear_error(synthetic_data, tmp_path):
    from albert_ner.train.loop import TrainArgs, run_training

    with pytest.raises(ValueError, match="--augment-mentions needs a typed --lexicon"):
        run_training(TrainArgs(train_file=str(synthetic_data["train"]), output_dir=str(tmp_path / "x"),
                               lexicon="none", augment_mentions=1, max_steps=1))


def test_character_profiles_without_a_lexicon_are_a_clear_error(synthetic_data, tmp_path):
    from albert_ner.train.loop import TrainArgs, run_training

    with pytest.raises(ValueError, match="--lexicon-profile needs a --lexicon"):
        run_training(TrainArgs(train_file=str(synthetic_data["train"]), output_dir=str(tmp_path / "x"),
                               lexicon="none", lexicon_profile=True, max_steps=1))


def test_without_jieba_the_recipe_leaves_the_lexicon_out_and_says_so(monkeypatch):
    from albert_ner.train import recipe
    from albert_ner.train.loop import TrainArgs

    monkeypatch.setattr(recipe, "jieba_installed", lambda: False)
    args = TrainArgs(train_file="t", output_dir="o")
    filled = recipe.fill_defaults(args, pretrained=False, model_type=None, train_sentences=1500)
    assert filled["lexicon"] == recipe.NO_LEXICON and filled["augment_mentions"] == 0
    note = recipe.missing_lexicon_note(TrainArgs(**{**vars(args), **filled}), pretrained=False)
    assert "pip install jieba" in note
    monkeypatch.setattr(recipe, "jieba_installed", lambda: True)
    assert recipe.missing_lexicon_note(TrainArgs(**{**vars(args), **filled}), pretrained=False) is None
