"""Tag schemes: splitting, detection, lenient decoding, encoding and the TagSet grammar."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics.sequence_labeling import get_entities

from albert_ner.data import Entity, Example, TagSet
from albert_ner.data.schemes import (
    decode_with_issues,
    detect_scheme,
    entities_to_tags,
    split_tag,
    tags_to_entities,
)

TYPES = ("PER", "LOC", "ORG")


@st.composite
def sentences_with_spans(draw, types=TYPES):
    """(length, sorted non-overlapping entities); adjacent entities are possible."""
    length = draw(st.integers(0, 40))
    cuts = sorted(draw(st.lists(st.integers(0, length), max_size=12)))
    entities = [
        Entity(a, b, draw(st.sampled_from(types)))
        for a, b in zip(cuts[::2], cuts[1::2])
        if a < b
    ]
    return length, entities


def seqeval_spans(tags):
    """seqeval's chunks as our Entity spans (its end is inclusive)."""
    return sorted(Entity(start, end + 1, type_) for type_, start, end in get_entities(list(tags)))


# --- split_tag / detect_scheme ---------------------------------------------------------------


@pytest.mark.parametrize(
    "tag, expected",
    [("O", ("O", None)), ("B-PER", ("B", "PER")), ("I_LOC", ("I", "LOC")),
     ("M-DRUG_NAME", ("M", "DRUG_NAME")), ("S-X", ("S", "X")), ("E-ORG", ("E", "ORG"))],
)
def test_split_tag(tag, expected):
    assert split_tag(tag) == expected


@pytest.mark.parametrize("tag", ["X-PER", "B-", "B", "PER", "o", "BPER", ""])
def test_split_tag_rejects_unknown(tag):
    with pytest.raises(ValueError, match="unrecognised tag"):
        split_tag(tag)


@pytest.mark.parametrize(
    "tags, scheme",
    [(["O", "B-PER", "I-PER"], "bio"), (["B-PER", "E-PER"], "bioes"), (["S-LOC", "O"], "bioes"),
     (["B-PER", "M-PER", "E-PER"], "bmes"), (["S-PER", "B_LOC", "M_LOC", "E_LOC"], "bmes"),
     ([], "bio"), (["O", "Other"], "bio")],
)
def test_detect_scheme(tags, scheme):
    assert detect_scheme(tags) == scheme


# --- decoding --------------------------------------------------------------------------------


def test_decode_valid_bio():
    tags = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]
    assert tags_to_entities(tags, "bio") == (
        [Entity(0, 2, "PER"), Entity(3, 4, "LOC"), Entity(4, 6, "LOC")], 0
    )


def test_decode_bio_underscore_style():
    assert tags_to_entities(["B_PER", "I_PER"], "bio") == ([Entity(0, 2, "PER")], 0)


def test_decode_bio_repairs():
    # I-LOC without B-LOC opens an entity; I-PER after B-LOC changes type: two repairs.
    entities, issues = decode_with_issues(["O", "I-LOC", "I-LOC", "I-PER", "O"], "bio")
    assert entities == [Entity(1, 3, "LOC"), Entity(3, 4, "PER")]
    assert issues == [(1, "I-LOC without B-LOC"), (3, "I-PER after I-LOC")]


def test_decode_bioes_and_bmes():
    bioes = ["B-PER", "I-PER", "E-PER", "S-LOC", "O", "B-ORG", "E-ORG"]
    bmes = ["B-PER", "M-PER", "E-PER", "S-LOC", "O", "B-ORG", "E-ORG"]
    expected = [Entity(0, 3, "PER"), Entity(3, 4, "LOC"), Entity(5, 7, "ORG")]
    assert tags_to_entities(bioes, "bioes") == (expected, 0)
    assert tags_to_entities(bmes, "bmes") == (expected, 0)


def test_decode_bioes_repairs():
    tags = ["B-PER", "I-PER", "O", "E-LOC", "I-ORG", "E-PER", "B-LOC"]
    entities, issues = decode_with_issues(tags, "bioes")
    assert entities == [
        Entity(0, 2, "PER"), Entity(3, 4, "LOC"), Entity(4, 5, "ORG"), Entity(5, 6, "PER"),
        Entity(6, 7, "LOC"),
    ]
    assert [i for i, _ in issues] == [1, 3, 4, 5, 6]
    assert issues[0][1] == "I-PER not closed by E-PER"
    assert issues[1][1] == "E-LOC without B-LOC"
    # A type change is one repair, not also a missing E-.
    assert issues[3][1] == "E-PER after I-ORG"


def test_decode_rejects_prefix_outside_scheme():
    with pytest.raises(ValueError, match="not valid in the bio scheme"):
        tags_to_entities(["B-PER", "M-PER"], "bio")
    with pytest.raises(ValueError, match="not valid in the bmes scheme"):
        tags_to_entities(["B-PER", "I-PER"], "bmes")
    with pytest.raises(ValueError, match="unknown tag scheme"):
        tags_to_entities(["O"], "iob1")


@pytest.mark.parametrize(
    "scheme, expected",
    [("bio", ["B-PER", "I-PER", "I-PER", "O", "B-LOC"]),
     ("bioes", ["B-PER", "I-PER", "E-PER", "O", "S-LOC"]),
     ("bmes", ["B-PER", "M-PER", "E-PER", "O", "S-LOC"])],
)
def test_entities_to_tags(scheme, expected):
    assert entities_to_tags(5, [Entity(4, 5, "LOC"), Entity(0, 3, "PER")], scheme) == expected


def test_entities_to_tags_rejects_bad_spans():
    with pytest.raises(ValueError, match="overlaps"):
        entities_to_tags(5, [Entity(0, 3, "PER"), Entity(2, 4, "LOC")], "bio")
    with pytest.raises(ValueError, match="outside"):
        entities_to_tags(3, [Entity(2, 4, "LOC")], "bio")


@settings(max_examples=200, deadline=None)
@given(sentences_with_spans(), st.sampled_from(["bio", "bioes", "bmes"]))
def test_encode_decode_identity(sample, scheme):
    length, entities = sample
    tags = entities_to_tags(length, entities, scheme)
    assert len(tags) == length
    assert tags_to_entities(tags, scheme) == (entities, 0)


@settings(max_examples=200, deadline=None)
@given(sentences_with_spans())
def test_valid_bio_matches_seqeval(sample):
    length, entities = sample
    tagset = TagSet(TYPES)
    ids = tagset.encode(Example("字" * length, entities))
    decoded = tagset.decode(np.array(ids))
    assert decoded == entities == seqeval_spans(tagset.tags[i] for i in ids)


BIO_TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
BIOES_TAGS = BIO_TAGS + ["E-PER", "S-PER", "E-LOC", "S-LOC"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(BIO_TAGS), max_size=30))
def test_lenient_bio_matches_seqeval_default_mode(tags):
    assert sorted(tags_to_entities(tags, "bio")[0]) == seqeval_spans(tags)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(BIOES_TAGS), max_size=30))
def test_lenient_bioes_matches_seqeval_default_mode(tags):
    assert sorted(tags_to_entities(tags, "bioes")[0]) == seqeval_spans(tags)


# --- TagSet ----------------------------------------------------------------------------------


def test_tagset_order_and_json():
    bio = TagSet(["PER", "LOC", "ORG", "LOC"])
    assert bio.types == ["LOC", "ORG", "PER"]
    assert bio.tags == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert bio.tag_to_id["B-ORG"] == 3 and len(bio) == 7
    bioes = TagSet(["PER"], scheme="bioes")
    assert bioes.tags == ["O", "B-PER", "I-PER", "E-PER", "S-PER"]
    data = bioes.to_json()
    assert data == {"scheme": "bioes", "types": ["PER"], "tags": bioes.tags}
    assert TagSet.from_json(data) == bioes


def test_tagset_from_json_rejects_reordered_tags():
    data = TagSet(["PER", "LOC"]).to_json()
    data["tags"] = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    with pytest.raises(ValueError, match="do not match"):
        TagSet.from_json(data)


def test_tagset_rejects_bmes_and_unknown_types():
    with pytest.raises(ValueError, match="model tag scheme"):
        TagSet(["PER"], scheme="bmes")
    tagset = TagSet.from_examples([Example("张三", [Entity(0, 2, "PER")])])
    assert tagset.types == ["PER"]
    with pytest.raises(ValueError, match="not in the tag set"):
        tagset.encode(Example("北京", [Entity(0, 2, "LOC")], "x.txt:3"))


def test_tagset_encode_decode():
    tagset = TagSet(TYPES, "bioes")
    example = Example("张三在北京", [Entity(0, 2, "PER"), Entity(3, 5, "LOC")])
    ids = tagset.encode(example)
    assert [tagset.tags[i] for i in ids] == ["B-PER", "E-PER", "O", "B-LOC", "E-LOC"]
    assert tagset.decode(ids) == example.entities


def test_allowed_transitions_bio():
    tagset = TagSet(["LOC", "PER"])
    trans, start, end = tagset.allowed_transitions()
    ids = tagset.tag_to_id
    assert trans.shape == (5, 5) and trans.dtype == bool
    assert not trans[ids["O"], ids["I-LOC"]]
    assert not trans[ids["B-PER"], ids["I-LOC"]]
    assert trans[ids["B-LOC"], ids["I-LOC"]] and trans[ids["I-LOC"], ids["I-LOC"]]
    assert trans[ids["I-LOC"], ids["B-PER"]] and trans[ids["O"], ids["O"]]
    assert not start[ids["I-PER"]] and start[ids["B-PER"]] and start[ids["O"]]
    assert end.all()


def test_allowed_transitions_bioes():
    tagset = TagSet(["LOC", "PER"], "bioes")
    trans, start, end = tagset.allowed_transitions()
    ids = tagset.tag_to_id
    assert trans[ids["B-PER"], ids["E-PER"]] and trans[ids["B-PER"], ids["I-PER"]]
    assert not trans[ids["B-PER"], ids["O"]] and not trans[ids["B-PER"], ids["E-LOC"]]
    assert not trans[ids["E-PER"], ids["I-PER"]] and trans[ids["E-PER"], ids["S-LOC"]]
    assert not start[ids["E-PER"]] and start[ids["S-PER"]]
    assert not end[ids["B-PER"]] and not end[ids["I-PER"]] and end[ids["E-PER"]]


@settings(max_examples=200, deadline=None)
@given(sentences_with_spans(), st.sampled_from(["bio", "bioes"]))
def test_allowed_transitions_accept_encoded_sequences(sample, scheme):
    length, entities = sample
    tagset = TagSet(TYPES, scheme)
    trans, start, end = tagset.allowed_transitions()
    ids = tagset.encode(Example("字" * length, entities))
    if ids:
        assert start[ids[0]] and end[ids[-1]]
    assert all(trans[a, b] for a, b in zip(ids, ids[1:]))
