"""Corpus statistics, their table, and the synthetic corpus they are often run on."""

from __future__ import annotations

from albert_ner.data import Entity, Example, corpus_stats, format_stats, make_synthetic_corpus
from albert_ner.data.schemes import entities_to_tags


def small_corpus() -> list[Example]:
    return [
        Example("张三在北京", [Entity(0, 2, "PER"), Entity(3, 5, "LOC")]),
        Example("你好", []),
        Example("新华社" + "字" * 7, [Entity(0, 3, "ORG")]),
    ]


def test_corpus_stats_counts():
    stats = corpus_stats(small_corpus(), max_seq_length=4)
    assert stats["sentences"] == 3
    assert stats["characters"] == 17
    assert stats["entities"] == {"LOC": 1, "ORG": 1, "PER": 1}
    assert list(stats["entities"]) == ["LOC", "ORG", "PER"]
    assert stats["total_entities"] == 3
    assert stats["sentences_with_entities"] == 2
    assert stats["length"]["min"] == 2 and stats["length"]["max"] == 10
    assert abs(stats["length"]["mean"] - 17 / 3) < 1e-9
    assert stats["length"]["p50"] == 5 and stats["length"]["p99"] == 10
    assert stats["max_seq_length"] == 4
    assert stats["longer_than_max_seq_length"] == 2


def test_corpus_stats_empty():
    stats = corpus_stats([])
    assert stats["sentences"] == 0 and stats["total_entities"] == 0
    assert stats["length"]["max"] == 0
    assert "sentences" in format_stats(stats)


def test_format_stats_is_aligned():
    text = format_stats(corpus_stats(small_corpus(), max_seq_length=4), title="train.txt")
    lines = text.splitlines()
    assert lines[0] == "train.txt"
    assert any(line.startswith("sentences ") and line.endswith(" 3") for line in lines)
    assert any(line.strip().startswith("PER") for line in lines)
    assert "longer than 4 chars" in text and "(66.7%)" in text
    # Values are right-aligned to one column: every line carrying a value ends at the same width.
    widths = {len(line) for line in lines[1:] if line.strip() != "sentence length"}
    assert len(widths) == 1


def test_synthetic_corpus_is_deterministic_and_varied():
    first = make_synthetic_corpus(300, seed=7)
    assert first == make_synthetic_corpus(300, seed=7)
    assert first != make_synthetic_corpus(300, seed=8)
    stats = corpus_stats(first, max_seq_length=150)
    assert set(stats["entities"]) == {"PER", "LOC", "ORG"}
    assert min(stats["entities"].values()) > 200
    assert stats["length"]["min"] >= 8 and stats["length"]["p90"] <= 90
    assert stats["longer_than_max_seq_length"] >= 1  # a few long ones for windowing tests
    for ex in first:
        entities_to_tags(len(ex.text), ex.entities, "bio")  # valid, non-overlapping spans
        assert all(ex.text[e.start : e.end] for e in ex.entities)


def test_synthetic_corpus_type_subset():
    corpus = make_synthetic_corpus(100, seed=0, types=("PER",))
    assert {e.type for ex in corpus for e in ex.entities} == {"PER"}
