"""Labelled data from the tools people label with: JSON layouts, doccano, Label Studio, brat,
overlapping spans, conversions that round-trip, prediction records, and bad input named by
file:line.

The files are built here in each tool's documented export shape (field names from the
tools' documentation), not produced by the writers under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from albert_ner.cli import main
from albert_ner.data import (
    DataError,
    Entity,
    Example,
    prediction_record,
    read_corpus,
    write_cluener,
    write_conll,
    write_corpus,
    write_doccano,
    write_jsonl,
)
from albert_ner.data.overlaps import OverlapResolver
from albert_ner.data.writers import CONVERT_FORMATS


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def spans(example: Example) -> list[tuple[str, str]]:
    return [(example.text[e.start : e.end], e.type) for e in example.entities]


def pairs(corpus) -> list[tuple[str, list[Entity]]]:
    return [(ex.text, ex.entities) for ex in corpus.examples]


# --- tool-shaped files, built from the tools' documented export formats ------------------------


def label_studio_task(task_id: int, text: str, annotations: list[list[tuple[int, int, str]]], **extra) -> dict:
    """A task of Label Studio's JSON export; each annotation is a list of (start, end, label)."""
    return {
        "id": task_id,
        "data": {"text": text},
        "annotations": [
            {
                "id": 100 * task_id + n,
                "completed_by": 1,
                "result": [
                    {"value": {"start": s, "end": e, "text": text[s:e], "labels": [label]},
                     "id": f"r{n}{i}", "from_name": "label", "to_name": "text", "type": "labels",
                     "origin": "manual"}
                    for i, (s, e, label) in enumerate(spans_)
                ],
                "was_cancelled": False,
                "ground_truth": False,
                "created_at": f"2024-01-0{n + 1}T10:00:00.000000Z",
                "updated_at": f"2024-01-0{n + 1}T10:00:00.000000Z",
                "lead_time": 3.2,
                "task": task_id,
            }
            for n, spans_ in enumerate(annotations)
        ],
        "predictions": [],
        "created_at": "2024-01-01T09:00:00.000000Z",
        "updated_at": "2024-01-05T09:00:00.000000Z",
        **extra,
    }


def write_label_studio(examples: list[Example], path: Path) -> Path:
    tasks = [
        label_studio_task(n + 1, ex.text, [[(e.start, e.end, e.type) for e in ex.entities]])
        for n, ex in enumerate(examples)
    ]
    return write(path, json.dumps(tasks, ensure_ascii=False, indent=2))


def write_brat(examples: list[Example], directory: Path) -> Path:
    """One document NAME.txt (a sentence per line) and its NAME.ann of T lines."""
    text = "\n".join(ex.text for ex in examples) + "\n"
    lines, offset, n = [], 0, 0
    for ex in examples:
        for e in ex.entities:
            n += 1
            lines.append(f"T{n}\t{e.type} {offset + e.start} {offset + e.end}\t{ex.text[e.start:e.end]}")
        offset += len(ex.text) + 1
    write(directory / "doc.txt", text)
    write(directory / "doc.ann", "\n".join(lines) + ("\n" if lines else ""))
    return directory / "doc.ann"


def write_groundtruth(examples: list[Example], path: Path) -> Path:
    records = [
        {"source": ex.text,
         "ner-job": {"annotations": {"entities": [
             {"label": e.type, "startOffset": e.start, "endOffset": e.end} for e in ex.entities
         ], "labels": [{"label": t} for t in sorted({e.type for e in ex.entities})]}},
         "ner-job-metadata": {"type": "groundtruth/text-span", "human-annotated": "yes"}}
        for ex in examples
    ]
    return write(path, jsonl(records))


SOURCES = {
    "conll-bio": lambda ex, d: write_conll(ex, d / "in.txt", scheme="bio"),
    "conll-bioes": lambda ex, d: write_conll(ex, d / "in.txt", scheme="bioes"),
    "conll-bmes": lambda ex, d: write_conll(ex, d / "in.txt", scheme="bmes"),
    "cluener": lambda ex, d: write_cluener(ex, d / "in.json"),
    "jsonl": lambda ex, d: write_jsonl(ex, d / "in.jsonl"),
    "doccano": lambda ex, d: write_doccano(ex, d / "in.jsonl"),
    "label-studio": lambda ex, d: write_label_studio(ex, d / "in.json"),
    "brat": lambda ex, d: write_brat(ex, d / "brat"),
    "groundtruth": lambda ex, d: write_groundtruth(ex, d / "in.manifest"),
}


# --- JSON layouts ------------------------------------------------------------------------------

CLUENER_RECORDS = [
    {"text": "浙商银行企业信贷部叶老桂博士", "label": {"name": {"叶老桂": [[9, 11]]}, "company": {"浙商银行": [[0, 3]]}}},
    {"text": "生生不息"},
    {"text": "北京北京", "label": {"address": {"北京": [[0, 1], [2, 3]]}}},
]
CLUENER_SPANS = [[("浙商银行", "company"), ("叶老桂", "name")], [], [("北京", "address"), ("北京", "address")]]


@pytest.mark.parametrize("layout", ["lines", "array", "array-one-line", "pretty"])
def test_json_layouts_are_detected_by_content(tmp_path, layout):
    if layout == "lines":
        content, starts = jsonl(CLUENER_RECORDS), [1, 2, 3]
    elif layout == "array":
        content = "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in CLUENER_RECORDS) + "\n]\n"
        starts = [2, 3, 4]
    elif layout == "array-one-line":
        content, starts = json.dumps(CLUENER_RECORDS, ensure_ascii=False), [1, 1, 1]
    else:
        pieces = [json.dumps(r, ensure_ascii=False, indent=2) for r in CLUENER_RECORDS]
        content = "\n".join(pieces) + "\n"
        starts, line = [], 1
        for piece in pieces:
            starts.append(line)
            line += piece.count("\n") + 1
    # The extension says nothing: a .txt holding JSON is read as JSON.
    path = write(tmp_path / "train.txt", content)
    corpus = read_corpus(path)
    assert corpus.format == "cluener"
    assert [spans(ex) for ex in corpus.examples] == CLUENER_SPANS
    assert [ex.source for ex in corpus.examples] == [f"{path}:{n}" for n in starts]


@pytest.mark.parametrize(
    "content, line, fragment",
    [
        ('{"text": "a", "label": {}}\n{"text": "b", "label": {}\n', 2, "invalid JSON (the file ends before this record is closed)"),
        ('{"text": "a",\n "label": {}}\n{"text": "b",\n "label": {]}\n', 4, "invalid JSON in the record starting at line 3"),
        ('[\n{"text": "a"},\n{"text": "b"}\n{"text": "c"}\n]', 4, "expected ',' or ']' after a record"),
        ('[{"text": "a"}] {"text": "b"}', 1, "after the closing ']'"),
        ('[\n{"text": "a"},\n"b"\n]', 3, "expected a JSON object (one record), got str"),
        ('{\n  "words": ["a"]\n}', 1, "expected a 'text' key"),
    ],
)
def test_bad_json_names_file_line_and_accepted_shapes(tmp_path, content, line, fragment):
    path = write(tmp_path / "data.json", content)
    with pytest.raises(DataError) as info:
        read_corpus(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert fragment in message
    assert "CLUENER" in message and "doccano" in message and "Label Studio" in message


def test_neither_json_nor_conll_lists_the_accepted_formats(tmp_path):
    path = write(tmp_path / "notes.txt", "这是一段没有标注的文字\n第二行\n")
    with pytest.raises(DataError) as info:
        read_corpus(path)
    message = str(info.value)
    assert message.startswith(f"{path}:1: expected 'CHAR<TAB>TAG'")
    assert "accepted:" in message and "brat" in message and "JSON array" in message


def test_conll_starting_with_a_brace_stays_conll(tmp_path):
    path = write(tmp_path / "brace.txt", "{\tO\n张\tS-PER\n}\tO\n\n[\tO\n")
    corpus = read_corpus(path)
    assert corpus.format == "conll"
    assert [ex.text for ex in corpus.examples] == ["{张}", "["]


# --- overlapping spans -------------------------------------------------------------------------

# The CLUENER train.json case: a book title with a company name nested inside it.
NESTED = {"text": "《腾讯传》作者吴晓波",
          "label": {"book": {"《腾讯传》": [[0, 4]]}, "company": {"腾讯": [[1, 2]]}, "name": {"吴晓波": [[7, 9]]}}}


def test_nested_cluener_keeps_the_outer_span_and_says_what_it_dropped(tmp_path):
    path = write(tmp_path / "train.json", jsonl([CLUENER_RECORDS[0], NESTED]))
    corpus = read_corpus(path)
    assert spans(corpus.examples[1]) == [("《腾讯传》", "book"), ("吴晓波", "name")]
    assert corpus.dropped == {"company": 1} and corpus.overlaps == "outer"
    message = corpus.repair_message()
    assert message.startswith(f"{path}: dropped 1 overlapping span (company 1)")
    assert f"{path}:2: company '腾讯' [1, 3) inside book '《腾讯传》' [0, 5)" in message
    assert "--overlaps outer" in message


def test_overlap_rule_first_and_error(tmp_path):
    inner_first = {"text": NESTED["text"], "label": {"company": {"腾讯": [[1, 2]]}, "book": {"《腾讯传》": [[0, 4]]}}}
    path = write(tmp_path / "train.json", jsonl([CLUENER_RECORDS[1], inner_first]))
    assert spans(read_corpus(path, overlaps="outer").examples[1]) == [("《腾讯传》", "book")]
    first = read_corpus(path, overlaps="first")
    assert spans(first.examples[1]) == [("腾讯", "company")] and first.dropped == {"book": 1}
    with pytest.raises(DataError) as info:
        read_corpus(path, overlaps="error")
    assert str(info.value).startswith(f"{path}:2: overlapping entities company '腾讯' [1, 3) and book")
    with pytest.raises(ValueError, match="unknown overlap rule"):
        read_corpus(path, overlaps="inner")


@pytest.mark.parametrize(
    "rule, listed, kept",
    [
        # A chain A-B-C where B is longest: outer keeps B alone; first keeps A and C.
        ("outer", [(0, 3, "A"), (2, 6, "B"), (5, 8, "C")], [(2, 6, "B")]),
        ("first", [(0, 3, "A"), (2, 6, "B"), (5, 8, "C")], [(0, 3, "A"), (5, 8, "C")]),
        # Equal length: the earlier start wins, then the first listed.
        ("outer", [(2, 4, "X"), (1, 3, "Y")], [(1, 3, "Y")]),
        ("outer", [(0, 2, "LOC"), (0, 2, "ORG")], [(0, 2, "LOC")]),
        # Exact duplicates merge without counting as a drop.
        ("outer", [(0, 2, "P"), (0, 2, "P"), (3, 4, "Q")], [(0, 2, "P"), (3, 4, "Q")]),
    ],
)
def test_overlap_rules(rule, listed, kept):
    resolver = OverlapResolver(rule)
    result = resolver.resolve([Entity(*s) for s in listed], "0123456789", "f", 1)
    assert result == [Entity(*s) for s in kept]
    unique = len(set(listed))
    assert resolver.total == unique - len(kept)


# --- doccano -----------------------------------------------------------------------------------


def test_doccano_exports(tmp_path):
    # doccano's sequence-labelling JSONL export: id, text, label [[start, end_exclusive, TYPE]].
    records = [
        {"id": 1, "text": "张三在北京工作", "label": [[3, 5, "LOC"], [0, 2, "PER"]], "Comments": []},
        {"id": 2, "text": "没有实体", "label": [], "Comments": []},
    ]
    corpus = read_corpus(write(tmp_path / "all.jsonl", jsonl(records)))
    assert corpus.format == "doccano"
    assert [spans(ex) for ex in corpus.examples] == [[("张三", "PER"), ("北京", "LOC")], []]
    # Older versions name the key "labels".
    old = [{"id": 1, "text": "张三", "labels": [[0, 2, "PER"]], "meta": {}}]
    assert spans(read_corpus(write(tmp_path / "old.jsonl", jsonl(old))).examples[0]) == [("张三", "PER")]
    # The relation-mode export keeps entities as objects with start_offset / end_offset.
    rel = [{"id": 6400, "text": "张三去北京", "Comments": [],
            "entities": [{"id": 1, "label": "PER", "start_offset": 0, "end_offset": 2},
                         {"id": 2, "label": "LOC", "start_offset": 3, "end_offset": 5}],
            "relations": [{"id": 9, "from_id": 1, "to_id": 2, "type": "去"}]}]
    corpus = read_corpus(write(tmp_path / "rel.jsonl", jsonl(rel)))
    assert corpus.format == "doccano" and spans(corpus.examples[0]) == [("张三", "PER"), ("北京", "LOC")]


# --- Label Studio ------------------------------------------------------------------------------


def test_label_studio_export_uses_the_latest_non_cancelled_annotation(tmp_path):
    text = "张三在北京"
    task = label_studio_task(1, text, [[(0, 2, "PER")], [(0, 2, "PER"), (3, 5, "LOC")], [(3, 5, "ORG")]])
    task["annotations"][2]["was_cancelled"] = True  # the newest was cancelled: not used
    # A relation between the two regions, which a tagger cannot learn: ignored and counted.
    task["annotations"][1]["result"].append(
        {"from_id": "r10", "to_id": "r11", "type": "relation", "direction": "right", "labels": []})
    task["predictions"] = [{"model_version": "v1", "result": [
        {"value": {"start": 0, "end": 5, "text": text, "labels": ["ORG"]}, "type": "labels"}]}]
    unlabelled = label_studio_task(2, "还没标注", [])
    only_cancelled = label_studio_task(3, "放弃了", [[(0, 1, "X")]])
    only_cancelled["annotations"][0]["was_cancelled"] = True
    path = write(tmp_path / "export.json", json.dumps([task, unlabelled, only_cancelled], ensure_ascii=False, indent=2))
    corpus = read_corpus(path)
    assert corpus.format == "label-studio"
    assert len(corpus.examples) == 1
    assert spans(corpus.examples[0]) == [("张三", "PER"), ("北京", "LOC")]
    assert corpus.examples[0].source == f"{path}:2"
    message = corpus.repair_message()
    assert "2 Label Studio tasks without a non-cancelled annotation (skipped)" in message
    assert "1 Label Studio results that are not text spans (relation)" in message


def test_label_studio_picks_by_updated_at_not_position(tmp_path):
    task = label_studio_task(1, "张三", [[(0, 2, "NEW")], [(0, 2, "OLD")]])
    task["annotations"][0]["updated_at"] = "2024-03-01T00:00:00Z"
    task["annotations"][1]["updated_at"] = "2024-02-01T00:00:00Z"
    corpus = read_corpus(write(tmp_path / "e.json", json.dumps([task], ensure_ascii=False)))
    assert spans(corpus.examples[0]) == [("张三", "NEW")]


def test_label_studio_json_min_and_utf16_offsets(tmp_path):
    # JSON-MIN export: one flat record per task; offsets counted by the browser in UTF-16.
    text = "😀张三来了"  # the emoji is 2 UTF-16 code units
    records = [{"id": 1, "text": text, "label": [{"start": 2, "end": 4, "text": "张三", "labels": ["PER"]}],
                "annotator": 1, "annotation_id": 7, "created_at": "2024-01-01T00:00:00Z",
                "updated_at": "2024-01-01T00:00:00Z", "lead_time": 2.0}]
    corpus = read_corpus(write(tmp_path / "min.json", json.dumps(records, ensure_ascii=False)))
    assert corpus.format == "label-studio"
    assert spans(corpus.examples[0]) == [("张三", "PER")]
    assert corpus.examples[0].entities == [Entity(1, 3, "PER")]


# --- brat --------------------------------------------------------------------------------------

BRAT_TEXT = "张三在北京。\n\n李四去上海\n"
BRAT_ANN = (
    "T1\tPER 0 2\t张三\n"
    "T2\tLOC 3 5\t北京\n"
    "T3\tPER 8 10\t李四\n"
    "T4\tLOC 11 13\t上海\n"
    "T5\tGPE 3 4;11 12\t北 上\n"
    "R1\tLives Arg1:T1 Arg2:T2\n"
    "A1\tNegated T3\n"
    "#1\tAnnotatorNotes T1\t人名\n"
)


@pytest.mark.parametrize("given_as", ["ann", "txt", "dir"])
def test_brat_standoff(tmp_path, given_as):
    write(tmp_path / "b" / "doc.txt", BRAT_TEXT)
    write(tmp_path / "b" / "doc.ann", BRAT_ANN)
    path = {"ann": tmp_path / "b" / "doc.ann", "txt": tmp_path / "b" / "doc.txt", "dir": tmp_path / "b"}[given_as]
    corpus = read_corpus(path)
    assert corpus.format == "brat"
    assert [ex.text for ex in corpus.examples] == ["张三在北京。", "李四去上海"]
    assert [spans(ex) for ex in corpus.examples] == [[("张三", "PER"), ("北京", "LOC")], [("李四", "PER"), ("上海", "LOC")]]
    assert corpus.examples[1].source == f"{tmp_path / 'b' / 'doc.txt'}:3"
    message = corpus.repair_message()
    ann = tmp_path / "b" / "doc.ann"
    # The discontinuous span is counted with its location; other line kinds are counted.
    assert "1 discontinuous brat spans" in message and f"{ann}:5: T5 GPE 3 4;11 12" in message
    assert "1 brat relation lines" in message and "1 brat attribute lines" in message
    assert "1 brat note lines" in message


def test_brat_crlf_text_and_overlaps(tmp_path):
    write(tmp_path / "d.txt", "北京大学在北京\r\n第二行\r\n")
    write(tmp_path / "d.ann", "T1\tORG 0 4\t北京大学\nT2\tLOC 0 2\t北京\nT3\tLOC 5 7\t北京\nT4\tNUM 10 11\t二\n")
    corpus = read_corpus(tmp_path / "d.ann")
    assert [ex.text for ex in corpus.examples] == ["北京大学在北京", "第二行"]
    assert [spans(ex) for ex in corpus.examples] == [[("北京大学", "ORG"), ("北京", "LOC")], [("二", "NUM")]]
    assert corpus.dropped == {"LOC": 1}
    with pytest.raises(DataError, match=r"d\.ann:2: overlapping entities ORG '北京大学'"):
        read_corpus(tmp_path / "d.ann", overlaps="error")


# --- every reader, every bad variant: file:line and what was expected ------------------------

BAD = [
    # (reader, file name, content, line, fragment)
    ("cluener", "a.json", jsonl([{"text": "叶老桂", "label": {"name": {"叶老桂": [[2, 1]]}}}]), 1, "outside the text"),
    ("cluener", "a.json", jsonl([{"text": "a"}, {"text": "叶老桂", "label": {"name": {"叶老桂": [[0, 3]]}}}]), 2, "outside the text (length 3)"),
    ("cluener", "a.json", jsonl([{"text": "叶老桂", "label": {"name": {"叶老桂": [[0, 1]]}}}]), 1, "does not match the text there: '叶老'"),
    ("cluener", "a.json", jsonl([{"text": "叶老桂", "label": {"name": ["叶老桂"]}}]), 1, "must map mentions"),
    ("entities", "a.jsonl", jsonl([{"text": "张三", "entities": [{"start": 1, "end": 0, "type": "PER"}]}]), 1, "out of range"),
    ("entities", "a.jsonl", jsonl([{"text": "张三", "entities": [{"start": 0, "end": 2, "type": None}]}]), 1, "has no type/label"),
    ("doccano", "a.jsonl", jsonl([{"id": 1, "text": "张三", "label": [[0, 2, "PER"]]}, {"id": 2, "text": "张三", "label": [[0, 9, "PER"]]}]), 2, "PER entity [0, 9) is out of range for a text of length 2"),
    ("doccano", "a.jsonl", jsonl([{"text": "张三", "label": [[2, 0, "PER"]]}]), 1, "out of range"),
    ("doccano", "a.jsonl", jsonl([{"text": "张三", "label": [[0, 2]]}]), 1, "is not [start, end, TYPE]"),
    ("doccano", "a.jsonl", jsonl([{"text": "张三", "label": [[0, 2, ""]]}]), 1, "has no type/label"),
    ("doccano", "a.jsonl", jsonl([{"text": "张三", "label": [["0", "2", "PER"]]}]), 1, "offsets must be integers"),
    ("doccano", "a.jsonl", jsonl([{"text": "张三", "entities": [{"label": "PER", "start_offset": 0, "end_offset": 3}]}]), 1, "out of range"),
    ("label-studio", "a.json", {"start": 0, "end": 2, "text": "李四", "labels": ["PER"]}, 3, "does not match text[0:2] = '张三'"),
    ("label-studio", "a.json", {"start": 0, "end": 7, "text": "张三", "labels": ["PER"]}, 3, "out of range"),
    ("label-studio", "a.json", {"start": 2, "end": 0, "text": "", "labels": ["PER"]}, 3, "out of range"),
    ("label-studio", "a.json", {"start": 0, "end": 2, "text": "张三", "labels": []}, 3, "has no 'labels' list"),
    ("label-studio", "a.json", {"start": 0, "end": 2, "text": "张三", "labels": [None]}, 3, "has no type/label"),
    ("label-studio", "a.json", {"data": {"text": 5, "other": 6}}, 3, "needs a 'text' string"),
    ("brat", "doc.ann", "T1\tPER 0 20\t张三\n", 1, "out of range for a text of length 9"),
    ("brat", "doc.ann", "T1\tPER 0 2\t张三\nT2\tLOC 3 5\t上海\n", 2, "LOC text '上海' does not match text[3:5] = '北京'"),
    ("brat", "doc.ann", "T1\tPER 2 0\t张三\n", 1, "out of range"),
    ("brat", "doc.ann", "T1\tPER zero two\t张三\n", 1, "are not 'START END'"),
    ("brat", "doc.ann", "T1\tPER\n", 1, "expected 'T<ID><TAB>TYPE START END<TAB>TEXT'"),
    ("brat", "doc.ann", "T1\tPER 0 2\t张三\n\nT2\tLOC 3 7\t北京 上\n", 3, "LOC [3, 7) crosses a line break"),
    ("groundtruth", "o.manifest", jsonl([{"source": "张三", "j": {"annotations": {"entities": [{"label": "PER", "startOffset": 0, "endOffset": 9}]}}}]), 1, "out of range"),
    ("groundtruth", "o.manifest", jsonl([{"source": "张三", "j": {"annotations": {"entities": [{"startOffset": 0, "endOffset": 2}]}}}]), 1, "has no type/label"),
]

@pytest.mark.parametrize("reader, name, content, line, fragment", BAD)
def test_bad_variants_name_file_and_line(tmp_path, reader, name, content, line, fragment):
    if reader == "label-studio":
        # `content` is the bad part: a result's value, or the task's data.
        task = label_studio_task(1, "张三在北京", [[(0, 2, "PER")]])
        if "data" in content:
            task["data"] = content["data"]
        else:
            task["annotations"][0]["result"][0]["value"] = content
        # The second task starts on line 3 of the array.
        good = label_studio_task(2, "好", [])
        content = "[\n" + json.dumps(good, ensure_ascii=False) + ",\n" + json.dumps(task, ensure_ascii=False) + "\n]\n"
    if reader == "brat":
        write(tmp_path / "doc.txt", "张三在北京\n上海\n")
    path = write(tmp_path / name, content)
    with pytest.raises(DataError) as info:
        read_corpus(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert fragment in message, message


@pytest.mark.parametrize("reader", ["cluener", "doccano", "label-studio", "brat", "conll"])
def test_non_utf8_is_refused_with_its_line(tmp_path, reader):
    good, bad = "张三".encode(), "北京".encode("gbk")
    if reader == "cluener":
        path = write(tmp_path / "a.json", b'{"text": "' + good + b'"}\n{"text": "' + bad + b'"}\n')
    elif reader == "doccano":
        path = write(tmp_path / "a.jsonl", b'{"text": "' + good + b'", "label": []}\n{"text": "' + bad + b'", "label": []}\n')
    elif reader == "label-studio":
        path = write(tmp_path / "a.json", b'[\n{"data": {"text": "' + good + b'"}, "annotations": []},\n{"data": {"text": "' + bad + b'"}, "annotations": []}\n]')
    elif reader == "brat":
        write(tmp_path / "doc.ann", "T1\tPER 0 2\t张三\n")
        path = write(tmp_path / "doc.txt", good + b"\n" + bad + b"\n")
    else:
        path = write(tmp_path / "a.txt", "张\tB-PER\n".encode() + "三\tI-PER\n".encode("gbk"))
    with pytest.raises(DataError) as info:
        read_corpus(path)
    assert "is not valid UTF-8" in str(info.value) and "iconv" in str(info.value)
    line = 3 if reader == "label-studio" else 2  # the array's "[" takes line 1
    assert str(info.value).startswith(f"{path}:{line}: "), str(info.value)


# --- round trips: read → convert → read keeps the entities, for every pair -----------------

ALPHABET = "张三李四北京上海中国人民银行的在了a b1《》{[-"
TYPES = ["PER", "LOC", "ORG", "name", "company", "B-X"]


@st.composite
def sentences(draw) -> Example:
    text = draw(st.text(alphabet=ALPHABET, min_size=1, max_size=14))
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=6)))
    entities = []
    for start, end in zip(cuts[::2], cuts[1::2]):
        if draw(st.booleans()):
            entities.append(Entity(start, end, draw(st.sampled_from(TYPES))))
    return Example(text, entities)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(sentences(), min_size=1, max_size=5))
def test_every_format_pair_round_trips(examples):
    # CoNLL cannot hold a sentence of spaces only (a blank line ends a sentence) nor a
    # "-DOCSTART-" line; the alphabet has neither a newline nor a tab.
    examples = [ex for ex in examples if ex.text.strip()]
    if not examples:
        return
    expected = [(ex.text, ex.entities) for ex in examples]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for source, make in SOURCES.items():
            directory = tmp / source
            first = read_corpus(make(examples, directory))
            assert pairs(first) == expected, source
            assert first.repair_message() is None, source
            for target in CONVERT_FORMATS:
                out = write_corpus(first.examples, directory / f"out.{target}", to=target)
                assert pairs(read_corpus(out)) == expected, (source, target)


# --- prediction records ------------------------------------------------------------------------


def test_prediction_records(tmp_path):
    ex = Example("张三在北京见李四", [Entity(0, 2, "PER"), Entity(3, 5, "LOC"), Entity(6, 8, "PER")])
    assert prediction_record(ex, "jsonl") == {"text": ex.text, "entities": [
        {"type": "PER", "start": 0, "end": 2, "text": "张三"},
        {"type": "LOC", "start": 3, "end": 5, "text": "北京"},
        {"type": "PER", "start": 6, "end": 8, "text": "李四"}]}
    assert prediction_record(ex, "cluener", index=7) == {
        "id": 7, "text": ex.text, "label": {"LOC": {"北京": [[3, 4]]}, "PER": {"张三": [[0, 1]], "李四": [[6, 7]]}}}
    assert prediction_record(ex, "doccano") == {"text": ex.text, "label": [[0, 2, "PER"], [3, 5, "LOC"], [6, 8, "PER"]]}
    assert prediction_record(Example("无", []), "cluener") == {"text": "无", "label": {}}
    # Each shape reads back as training data.
    for fmt in ("jsonl", "cluener", "doccano"):
        path = write(tmp_path / f"{fmt}.json", jsonl([prediction_record(ex, fmt, index=0)]))
        assert read_corpus(path).examples[0].entities == ex.entities, fmt
    with pytest.raises(ValueError, match="unknown prediction format"):
        prediction_record(ex, "xml")


# --- the CLI -----------------------------------------------------------------------------------


def test_cli_convert_stats_validate_with_overlaps(tmp_path, capsys):
    source = write(tmp_path / "train.json", jsonl([CLUENER_RECORDS[0], NESTED]))
    assert main(["data", "stats", str(source)]) == 0
    out = capsys.readouterr().out
    assert "overlapping spans dropped" in out and "company" in out
    assert "warning: " in out and "dropped 1 overlapping span (company 1)" in out

    assert main(["data", "validate", str(source)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "format cluener" in out and "(company 1)" in out
    assert main(["data", "validate", "--strict", str(source)]) == 1
    capsys.readouterr()
    assert main(["data", "validate", "--overlaps", "error", str(source)]) == 2
    assert f"error: {source}:2: overlapping entities" in capsys.readouterr().err

    for to in ("conll", "cluener", "doccano", "jsonl", "bioes"):
        target = tmp_path / f"out.{to}"
        assert main(["data", "convert", str(source), "--to", to, "--output", str(target)]) == 0
        assert f"wrote 2 sentences to {target} ({to})" in capsys.readouterr().out
        back = read_corpus(target)
        assert [spans(ex) for ex in back.examples] == [
            [("浙商银行", "company"), ("叶老桂", "name")], [("《腾讯传》", "book"), ("吴晓波", "name")]]
    assert read_corpus(tmp_path / "out.conll").scheme == "bio"


def test_cli_reads_brat_directory(tmp_path, capsys):
    write(tmp_path / "b" / "doc.txt", BRAT_TEXT)
    write(tmp_path / "b" / "doc.ann", BRAT_ANN)
    assert main(["data", "validate", "--data-format", "brat", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "2 sentences, format brat" in out and "discontinuous" in out


@pytest.mark.slow
def test_nested_cluener_file_trains_without_manual_edit(synthetic_data, tmp_path, capsys):
    from albert_ner.data.readers import read_conll

    # Generated sentences as CLUENER records, plus an inner span nested in every other
    # entity of three characters or more, as CLUENER's book titles nest company names.
    records, nested = [], 0
    for ex in read_conll(synthetic_data["train"]).examples[:120]:
        record = prediction_record(ex, "cluener")
        for n, e in enumerate(ex.entities):
            if e.end - e.start >= 3 and n % 2 == 0:
                mention = ex.text[e.start + 1 : e.end]
                record["label"].setdefault("inner", {}).setdefault(mention, []).append([e.start + 1, e.end - 1])
                nested += 1
        records.append(record)
    assert nested >= 5
    train = write(tmp_path / "train.json", jsonl(records))
    dev = write(tmp_path / "dev.json", jsonl(records[:20]))
    code = main(["train", "--train-file", str(train), "--dev-file", str(dev), "--output-dir", str(tmp_path / "m"),
                 "--model-config", "micro", "--batch-size", "16", "--max-seq-length", "40",
                 "--max-steps", "2", "--eval-every", "2", "--log-every", "1", "--no-export"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"warning: {train}: dropped {nested} overlapping spans (inner {nested})" in out
    assert "global_step = 2" in out


# --- a quiet CLI: TensorFlow's native start-up lines only with --verbose ------------------------

NATIVE_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    "I0000 00:00:1795942405.804942    6672 port.cc:153] oneDNN custom operations are on. You may see "
    "slightly different numerical results due to floating-point round-off errors from different "
    "computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.\n",
    "2026-01-30 22:44:42.456316: I tensorflow/core/util/port.cc:153] oneDNN custom operations are on.\n",
    "E0000 00:00:1795942405.900000    6672 cuda_dnn.cc:8310] Unable to register cuDNN factory\n",
    "/x/site-packages/keras/src/export.py:12: UserWarning: something Python said\n",
]


def test_native_log_filter_keeps_errors_and_everything_else():
    from albert_ner.cli import _filter_native_lines

    assert _filter_native_lines(NATIVE_LINES, 2) == NATIVE_LINES[3:]
    assert _filter_native_lines(NATIVE_LINES, 0) == NATIVE_LINES
    assert _filter_native_lines(NATIVE_LINES, 3) == NATIVE_LINES[4:]


@pytest.mark.slow  # two child processes that each load TensorFlow
def test_cli_stderr_has_only_the_projects_lines(tmp_path):
    """Run the real CLI on a command that loads TensorFlow and fails on a missing model."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    command = [sys.executable, "-m", "albert_ner.cli", "export", "--model-dir", str(tmp_path / "none")]
    quiet = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 2
    assert quiet.stderr.splitlines() == [line for line in quiet.stderr.splitlines() if line.startswith("error: ")]
    assert len(quiet.stderr.splitlines()) == 1, quiet.stderr
    loud = subprocess.run([*command, "--verbose"], env=env, capture_output=True, text=True, timeout=300)
    assert loud.returncode == 2 and loud.stderr.splitlines()[-1] == quiet.stderr.splitlines()[-1]
    # Whatever TensorFlow prints on this machine shows up with --verbose (here: the oneDNN note).
    if "oneDNN custom operations are on" not in loud.stderr:
        pytest.skip("this TensorFlow build prints no start-up lines to hide")
    assert "InitializeLog" in loud.stderr


@pytest.mark.slow  # loads the session's trained model twice
def test_predict_writes_cluener_and_doccano_records(trained_model, tmp_path):
    texts = write(tmp_path / "in.txt", "张三在北京工作\n\n新华社报道\n")
    for fmt in ("cluener", "doccano"):
        out = tmp_path / f"out.{fmt}"
        assert main(["predict", "--model-dir", str(trained_model), "--input", str(texts),
                     "--output", str(out), "--format", fmt]) == 0
        records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert [r["text"] for r in records] == ["张三在北京工作", "", "新华社报道"]
        if fmt == "cluener":
            assert [r["id"] for r in records] == [0, 1, 2]
            assert all(isinstance(r["label"], dict) for r in records)
        else:
            assert all(isinstance(r["label"], list) for r in records)
        # The file reads back as a corpus of the same shape (pre-annotation round trip).
        assert read_corpus(out).format == fmt
