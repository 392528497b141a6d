"""Tests for albert_ner.text: Vocab, CharTokenizer (Python and in-graph) and long-text windows."""

from __future__ import annotations

import os
import random
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from albert_ner.data.example import Entity, Example
from albert_ner.text.tokenizer import (
    DEFAULT_KEY,
    CharTokenizer,
    bert_normalize,
    load_codepoint_table,
    make_codepoint_lookup,
    tf_encode,
)
from albert_ner.text.vocab import BUILD_SPECIALS, Vocab
from albert_ner.text.windows import (
    merge_window_scores,
    split_example,
    window_starts,
    window_weights,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VOCAB = REPO / ".." / "shared" / "data" / "vocab" / "bert_chinese_vocab.txt"
VOCAB_FILE = Path(os.environ.get("VOCAB_FILE", DEFAULT_VOCAB))
needs_vocab = pytest.mark.skipif(not VOCAB_FILE.is_file(), reason=f"no BERT vocab at {VOCAB_FILE}")


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def bert_vocab() -> Vocab:
    if not VOCAB_FILE.is_file():
        pytest.skip(f"no BERT vocab at {VOCAB_FILE}")
    return Vocab.load(VOCAB_FILE)


@pytest.fixture(scope="module")
def tok(bert_vocab) -> CharTokenizer:
    return CharTokenizer(bert_vocab)


@pytest.fixture(scope="module")
def tok_bert(bert_vocab) -> CharTokenizer:
    return CharTokenizer(bert_vocab, fold_width=False)


@pytest.fixture(scope="module")
def table_path(tok, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("assets") / "codepoints.tsv"
    tok.write_codepoint_table(path)
    return path


def all_codepoints():
    return (cp for cp in range(0x30000) if not 0xD800 <= cp < 0xE000)


# --------------------------------------------------------------------------- reference BERT
class ReferenceBert:
    """Google BERT's BasicTokenizer(do_lower_case=True) + WordPiece, written from its steps.

    clean text (drop NUL, U+FFFD and controls; BERT-whitespace -> " "), pad CJK with spaces,
    split on whitespace, lower-case, NFD + drop Mn, split on punctuation, greedy longest-match
    WordPiece with "##" continuations; a word with any unmatched rest becomes one [UNK].
    """

    def __init__(self, vocab: Vocab):
        self.ids = {t: i for i, t in enumerate(vocab.tokens)}
        self.unk = self.ids["[UNK]"]

    @staticmethod
    def is_whitespace(c):
        return c in " \t\n\r" or unicodedata.category(c) == "Zs"

    @staticmethod
    def is_control(c):
        return c not in "\t\n\r" and unicodedata.category(c).startswith("C")

    @staticmethod
    def is_punctuation(c):
        cp = ord(c)
        if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
            return True
        return unicodedata.category(c).startswith("P")

    def wordpiece(self, word):
        out, start = [], 0
        while start < len(word):
            end, piece = len(word), None
            while start < end:
                sub = word[start:end] if start == 0 else "##" + word[start:end]
                if sub in self.ids:
                    piece = sub
                    break
                end -= 1
            if piece is None:
                return [self.unk]
            out.append(self.ids[piece])
            start = end
        return out

    def tokenize(self, text):
        cleaned = "".join(
            " " if self.is_whitespace(c) else c
            for c in text
            if not (ord(c) in (0, 0xFFFD) or self.is_control(c))
        )
        ids = []
        for word in cleaned.split():  # str.split: every Unicode whitespace, as BERT does
            word = "".join(
                c
                for c in unicodedata.normalize("NFD", word.lower())
                if unicodedata.category(c) != "Mn"
            )
            pieces, current = [], ""
            for c in word:
                if self.is_punctuation(c):
                    pieces += [current, c] if current else [c]
                    current = ""
                else:
                    current += c
            if current:
                pieces.append(current)
            for piece in pieces:
                ids += self.wordpiece(piece)
        return ids


# --------------------------------------------------------------------------- Vocab
@needs_vocab
def test_load_real_vocab(bert_vocab, tmp_path):
    v = bert_vocab
    assert len(v) == 21128
    assert (v.pad_id, v.unk_id, v.cls_id, v.sep_id) == (0, 100, 101, 102)
    assert v.token_to_id("[unused1]") == 1
    assert v.id_to_token(343) == "\u2028"  # a whitespace-like token kept as is
    assert "中" in v and v.token_to_id("中") == 704
    v.save(tmp_path / "vocab.txt")
    assert Vocab.load(tmp_path / "vocab.txt").tokens == v.tokens


def test_vocab_keeps_lines_exactly(tmp_path):
    path = tmp_path / "vocab.txt"
    raw = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n \n\u2028\n\xa0\n\u0085\nx\r\n"
    path.write_bytes(raw.encode("utf-8"))
    v = Vocab.load(path)
    assert v.tokens == ("[PAD]", "[UNK]", "[CLS]", "[SEP]", " ", "\u2028", "\xa0", "\u0085", "x")


def test_vocab_errors(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\na\nb\na\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 7.*'a'.*line 5"):
        Vocab.load(path)
    path.write_text("[PAD]\n[UNK]\na\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"\[CLS\], \[SEP\]"):
        Vocab.load(path)
    v = Vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    with pytest.raises(KeyError):
        v.token_to_id("zz")
    assert v.token_to_id("zz", default=-1) == -1
    with pytest.raises(IndexError):
        v.id_to_token(-1)


def test_build_vocab_deterministic():
    texts = ["北京欢迎你", "Ａ a A 北京", "京é"]
    v = Vocab.build(texts)
    assert v.tokens[: len(BUILD_SPECIALS)] == BUILD_SPECIALS
    assert (v.pad_id, v.token_to_id("[unused1]"), v.unk_id, v.cls_id, v.sep_id) == (0, 1, 2, 3, 4)
    # 京 x3, 北 x2 (ties by code point), "Ａ"/"A"/"a" -> "a" x3, "é" -> "e"; spaces never counted
    chars = list(v.tokens[len(BUILD_SPECIALS) :])
    assert chars == ["a", "京", "北", "e", "你", "欢", "迎"]
    assert Vocab.build(list(reversed(texts))).tokens == v.tokens
    assert Vocab.build(texts, min_count=2).tokens[len(BUILD_SPECIALS) :] == ("a", "京", "北")
    assert len(Vocab.build(texts, max_size=8)) == 8
    # a built vocab works with the tokenizer: every counted character is found again
    tok = CharTokenizer(v)
    assert v.unk_id not in tok.encode("北京欢迎你Ａ a A é")
    assert tok.encode(" \u3000") == [1, 1]


# --------------------------------------------------------------------------- CharTokenizer
@needs_vocab
def test_mixed_sample(tok, bert_vocab):
    text = "中国Ａbc１２３，。ＡＢＣ 北京 Hello WORLD ｅ é ü 2024年\u3000⁴Ⓐ\xa0😀\u0301"
    expected = (
        ["中", "国", "ａ", "b", "c", "１", "２", "３", "，", "。", "ａ", "ｂ", "ｃ", "[unused1]"]
        + ["北", "京", "[unused1]", "h", "e", "l", "l", "o", "[unused1]"]
        + ["w", "o", "r", "l", "d", "[unused1]", "ｅ", "[unused1]", "e", "[unused1]", "u"]
        + ["[unused1]", "2", "0", "2", "4", "年", "[unused1]", "4", "a", "[unused1]"]
        + ["[UNK]" if "😀" not in bert_vocab else "😀", "[UNK]"]
    )
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert [bert_vocab.id_to_token(i) for i in ids] == expected
    assert ids[:2] == [704, 1744]
    # without width folding "⁴" and "Ⓐ" are [UNK], as in BERT
    plain = CharTokenizer(bert_vocab, fold_width=False).encode("⁴Ⓐ")
    assert plain == [bert_vocab.unk_id] * 2
    assert tok.encode_batch(["中", "", "京北"]) == [[704], [], [776, 1266]]
    with pytest.raises(ValueError):
        tok.id_of("ab")


@needs_vocab
def test_no_fold_equals_bert_for_every_codepoint(tok_bert, bert_vocab):
    """fold_width=False gives BERT's id for every character BERT gives exactly one id.

    Documented exceptions: BERT gives no id (whitespace -> [unused1], the rest -> [UNK]) or
    several ids (Hangul syllables -> [UNK]).
    """
    ref = ReferenceBert(bert_vocab)
    space_id = bert_vocab.token_to_id("[unused1]")
    several = 0
    for cp in all_codepoints():
        char = chr(cp)
        want = ref.tokenize(char)
        got = tok_bert.id_of(char)
        if len(want) == 1:
            assert got == want[0], (hex(cp), want, got)
        elif not want:
            assert got == (space_id if char.isspace() else bert_vocab.unk_id), hex(cp)
        else:
            several += 1
            assert got == bert_vocab.unk_id, hex(cp)
            assert unicodedata.name(char).startswith("HANGUL SYLLABLE"), hex(cp)
    assert several > 0  # the reference really exercised the multi-piece path


@needs_vocab
def test_fold_width_only_replaces_unk(tok, tok_bert, bert_vocab):
    folded, plain = dict(tok.codepoint_table()), dict(tok_bert.codepoint_table())
    assert all(folded[cp] == i for cp, i in plain.items())
    assert len(folded) > len(plain)
    assert folded[ord("⁴")] == bert_vocab.token_to_id("4")


@needs_vocab
@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.one_of(
            st.characters(),  # all planes, surrogates excluded
            st.sampled_from("😀👍🏽\u200d\u0301\u0308\u3000\xa0\t\n\ufffd가é"),
        ),
        max_size=50,
    )
)
def test_encode_keeps_every_position(tok, text):
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert ids == [tok.id_of(c) for c in text]


@needs_vocab
def test_codepoint_table_file_roundtrip(tok, table_path):
    table = load_codepoint_table(table_path)
    assert table.pop(DEFAULT_KEY) == tok.unk_id
    assert table == dict(tok.codepoint_table())
    assert tok.unk_id not in table.values()


def _random_texts(bert_vocab, count=300, seed=0):
    """Strings mixing common, full-width, whitespace and rare characters."""
    rng = random.Random(seed)
    common = [t for t in bert_vocab.tokens[:8000] if len(t) == 1]
    pools = [
        common,
        list(" \t\n\r\u3000\xa0\u2028\u2029\u200b\u200d\ufeff\x00\x7f"),
        [chr(cp) for cp in range(0xFF01, 0xFF5F)],  # full-width ASCII
        list("ÀÉÎõüÅǅﬁ⁴₂Ⓐℓ①㎏İıßẞΣς\u0301\u0308\ufffd가힣ᄀ"),
        # emoji, skin tone, CJK Ext B, compatibility ideograph, private use, Ext G, tag
        [chr(cp) for cp in (0x1F600, 0x1F44D, 0x1F3FD, 0x20000, 0x2A6D6, 0x2F800)]
        + [chr(cp) for cp in (0xE000, 0x30000, 0xE0041, 0x10FFFD)],
    ]
    texts = []
    for _ in range(count):
        n = rng.randrange(0, 40)
        texts.append("".join(rng.choice(rng.choice(pools)) for _ in range(n)))
    # plus arbitrary code points from all planes (surrogates cannot be UTF-8 encoded)
    valid = [cp for cp in range(0x110000) if not 0xD800 <= cp < 0xE000]
    texts += ["".join(chr(rng.choice(valid)) for _ in range(20)) for _ in range(50)]
    return texts


@needs_vocab
def test_tf_encode_equals_encode(tok, bert_vocab, table_path):
    import tensorflow as tf

    table = make_codepoint_lookup(table_path)
    texts = _random_texts(bert_vocab)
    got = tf_encode(tf.constant(texts), table)
    assert got.dtype == tf.int32
    assert got.to_list() == tok.encode_batch(texts)
    # explicit default and a tf.function trace give the same
    traced = tf.function(lambda t: tf_encode(t, make_codepoint_lookup(table_path, tok.unk_id)))
    assert traced(tf.constant(texts[:20])).to_list() == tok.encode_batch(texts[:20])
    # invalid UTF-8 does not fail the batch; valid characters keep their ids
    bad = tf_encode(tf.constant([b"\xff\xfe\xe4\xb8\xad"]), table).to_list()[0]
    assert bad[-1] == 704 and set(bad[:-1]) == {tok.unk_id}


# --------------------------------------------------------------------------- windows
@given(st.integers(0, 300), st.integers(1, 40), st.data())
def test_window_starts_cover_everything(length, window, data):
    stride = data.draw(st.integers(1, window))
    starts = window_starts(length, window, stride)
    assert starts[0] == 0
    assert starts == sorted(set(starts))
    if length <= window:
        assert starts == [0]
    else:
        assert starts[-1] + window == length
        assert all(b - a <= stride for a, b in zip(starts, starts[1:]))
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s : s + window] = True
    assert covered.all()


def test_window_starts_examples_and_errors():
    assert window_starts(10, 4, 3) == [0, 3, 6]
    assert window_starts(11, 4, 3) == [0, 3, 6, 7]
    assert window_starts(3, 4, 2) == [0]
    with pytest.raises(ValueError):
        window_starts(10, 4, 5)


def test_window_weights():
    assert window_weights(5).tolist() == [1, 2, 3, 2, 1]
    assert window_weights(4).tolist() == [1, 2, 2, 1]
    assert window_weights(5).dtype == np.float32


@given(st.integers(1, 200), st.integers(1, 30), st.data())
def test_merge_constant_scores(length, window, data):
    stride = data.draw(st.integers(1, window))
    starts = window_starts(length, window, stride)
    const = np.array([0.5, -3.0, 7.25], np.float32)
    scores = [np.tile(const, (min(window, length - s), 1)) for s in starts]
    merged = merge_window_scores(length, starts, scores)
    assert merged.shape == (length, 3) and merged.dtype == np.float32
    np.testing.assert_allclose(merged, np.tile(const, (length, 1)), rtol=1e-6)


def test_merge_weights_centre_more():
    # positions 2..3 are seen by both windows: window A at its right edge, B near its centre
    merged = merge_window_scores(6, [0, 2], [np.zeros((4, 1)), np.ones((4, 1))])
    assert merged[:2, 0].tolist() == [0, 0] and merged[4:, 0].tolist() == [1, 1]
    np.testing.assert_allclose(merged[2:4, 0], [1 / 3, 2 / 3])  # weights A: 2,1  B: 1,2
    with pytest.raises(ValueError, match="covered by no window"):
        merge_window_scores(6, [0], [np.zeros((4, 1))])


@st.composite
def examples(draw):
    text = draw(st.text(alphabet="北京大学上海abc ，", max_size=60))
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=10)))
    spans = [(a, b) for a, b in zip(cuts[::2], cuts[1::2]) if a < b]
    entities = [Entity(a, b, draw(st.sampled_from(["LOC", "ORG"]))) for a, b in spans]
    return Example(text, entities, source="train.txt:7")


@given(examples(), st.integers(1, 16), st.data())
def test_split_example(example, window, data):
    stride = data.draw(st.integers(1, window))
    pieces = split_example(example, window, stride)
    starts = window_starts(len(example.text), window, stride)
    assert len(pieces) == len(starts)
    covered = np.zeros(len(example.text), bool)
    for index, (start, piece) in enumerate(zip(starts, pieces)):
        assert piece.text == example.text[start : start + window]
        covered[start : start + len(piece.text)] = True
        assert piece.source == (example.source if len(pieces) == 1 else f"train.txt:7#w{index}")
        end = start + len(piece.text)
        want = [
            Entity(max(e.start, start) - start, min(e.end, end) - start, e.type)
            for e in example.entities
            if max(e.start, start) < min(e.end, end)
        ]
        assert piece.entities == want
        for e in piece.entities:  # offsets stay exact: same characters as in the original
            assert piece.text[e.start : e.end] == example.text[start + e.start : start + e.end]
        # entities wholly inside the window are kept unchanged (shifted)
        for e in example.entities:
            if start <= e.start and e.end <= end:
                assert Entity(e.start - start, e.end - start, e.type) in piece.entities
    assert covered.all()
