"""Readers and writers: every supported format, every error with its file and line."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

from albert_ner.data import (
    Corpus,
    DataError,
    Entity,
    Example,
    make_synthetic_corpus,
    read_conll,
    read_corpus,
    read_jsonl,
    write_conll,
    write_jsonl,
    write_synthetic_split,
)

REPO = Path(__file__).resolve().parents[1]
MSRA_DIR = Path(os.environ.get("MSRA_DIR", REPO.parent / "shared" / "data" / "msra"))


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def spans(example: Example) -> list[tuple[str, str]]:
    return [(example.text[e.start : e.end], e.type) for e in example.entities]


# --- DataError ---------------------------------------------------------------------------------


def test_data_error_formatting():
    err = DataError("train.txt", 1234, "expected 'CHAR<TAB>TAG' (2 columns), got 3 columns: '中 B-PER x'")
    assert str(err) == "train.txt:1234: expected 'CHAR<TAB>TAG' (2 columns), got 3 columns: '中 B-PER x'"
    assert isinstance(err, ValueError) and err.line == 1234 and err.path == "train.txt"
    assert str(DataError(Path("a.json"), None, "empty")) == "a.json: empty"
    assert str(pickle.loads(pickle.dumps(err))) == str(err)


# --- CoNLL -------------------------------------------------------------------------------------


def test_conll_bio_basic(tmp_path):
    path = write(
        tmp_path, "train.txt",
        "-DOCSTART-\tO\n\n张\tB-PER\n三\tI-PER\n在\tO\n北\tB-LOC\n京\tI-LOC\n\n\n我 O\n爱 O\n",
    )
    corpus = read_conll(path)
    assert isinstance(corpus, Corpus)
    assert [ex.text for ex in corpus.examples] == ["张三在北京", "我爱"]
    assert spans(corpus.examples[0]) == [("张三", "PER"), ("北京", "LOC")]
    assert corpus.examples[0].source == f"{path}:3"
    assert corpus.examples[1].source == f"{path}:10"
    assert (corpus.format, corpus.scheme, corpus.repairs) == ("conll", "bio", 0)
    assert corpus.types == ["LOC", "PER"]
    assert corpus.repair_message() is None


def test_conll_crlf_bom_space_character_and_no_final_blank(tmp_path):
    path = write(tmp_path, "dev.txt", "\ufeff张\tB-PER\r\n三\tI-PER\r\n \tO\r\n李\tB-PER\r\n\r\n好\tO")
    corpus = read_conll(path)
    assert [ex.text for ex in corpus.examples] == ["张三 李", "好"]
    assert spans(corpus.examples[0]) == [("张三", "PER"), ("李", "PER")]


def test_conll_bioes_auto_detected(tmp_path):
    path = write(tmp_path, "a.txt", "张\tB-PER\n三\tE-PER\n去\tO\n京\tS-LOC\n\n")
    corpus = read_conll(path)
    assert corpus.scheme == "bioes" and corpus.repairs == 0
    assert spans(corpus.examples[0]) == [("张三", "PER"), ("京", "LOC")]


def test_conll_bmes_with_eight_types(tmp_path):
    types = ["DRUG", "DISEASE", "SYMPTOM", "ANATOMY", "TEST", "TREATMENT", "DOSAGE", "FREQUENCY"]
    mentions = ["阿司匹林", "高血压", "头痛", "胃", "血常规", "手术", "两片", "每日"]
    lines, expected = [], []
    for type_, mention in zip(types, mentions):
        # Each sentence: "服" O, then the mention in BMES, then "。" O.
        tags = ["S-" + type_] if len(mention) == 1 else (
            ["B-" + type_] + ["M-" + type_] * (len(mention) - 2) + ["E-" + type_]
        )
        lines += ["服 O"] + [f"{c} {t}" for c, t in zip(mention, tags)] + ["。 O", ""]
        expected.append(("服" + mention + "。", [(mention, type_)]))
    path = write(tmp_path, "medical.txt", "\n".join(lines))
    corpus = read_corpus(path)
    assert corpus.scheme == "bmes" and corpus.repairs == 0
    assert [(ex.text, spans(ex)) for ex in corpus.examples] == expected
    assert corpus.types == sorted(types)


def test_conll_repairs_are_counted_with_locations(tmp_path):
    path = write(tmp_path, "train.txt", "在\tO\n北\tI-LOC\n京\tI-LOC\n\n张\tB-PER\n三\tI-LOC\n")
    corpus = read_conll(path)
    assert corpus.repairs == 2
    assert corpus.repair_samples == [
        f"{path}:2: I-LOC without B-LOC",
        f"{path}:6: I-LOC after B-PER",
    ]
    assert spans(corpus.examples[0]) == [("北京", "LOC")]
    assert "repaired 2 invalid tag transitions" in corpus.repair_message()


def test_conll_repair_samples_are_capped(tmp_path):
    path = write(tmp_path, "t.txt", "\n\n".join("字\tI-LOC" for _ in range(20)))
    corpus = read_conll(path)
    assert corpus.repairs == 20 and len(corpus.repair_samples) == 5


@pytest.mark.parametrize(
    "content, line, fragment",
    [
        ("张\tB-PER\n中\tB-PER\tx\n", 2, "expected 'CHAR<TAB>TAG' (2 columns), got 3 columns: '中<TAB>B-PER<TAB>x'"),
        ("张 B-PER\n中 B-PER x\n", 2, "got 3 columns: '中 B-PER x'"),
        ("张\tB-PER\n\n中\n", 3, "got 1 columns"),
        ("张三\tB-PER\n", 1, "expected one character per line, got '张三' (2 characters)"),
        ("张\tB-PER\n三\tX-PER\n", 2, "unrecognised tag 'X-PER'"),
    ],
)
def test_conll_errors_name_file_and_line(tmp_path, content, line, fragment):
    path = write(tmp_path, "train.txt", content)
    with pytest.raises(DataError) as info:
        read_conll(path)
    assert info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert fragment in str(info.value)


def test_conll_prefix_not_in_forced_scheme(tmp_path):
    path = write(tmp_path, "train.txt", "张\tB-PER\n三\tM-PER\n李\tE-PER\n")
    assert read_conll(path).scheme == "bmes"
    with pytest.raises(DataError, match=r"train\.txt:2: tag 'M-PER' is not valid in the bio scheme"):
        read_conll(path, scheme="bio")


def test_conll_non_utf8_is_refused_with_line_and_offset(tmp_path):
    content = "张\tB-PER\n".encode() + "三\tI-PER\n".encode("gbk")
    path = write(tmp_path, "gbk.txt", content)
    with pytest.raises(DataError) as info:
        read_conll(path)
    message = str(info.value)
    assert message.startswith(f"{path}:2: file is not valid UTF-8")
    offset = len("张\tB-PER\n".encode())  # the first undecodable byte starts line 2
    assert f"byte offset {offset}" in message
    assert "re-encode" in message and "iconv" in message


# --- JSON lines --------------------------------------------------------------------------------


def test_cluener(tmp_path):
    lines = [
        {"text": "浙商银行企业信贷部叶老桂博士", "label": {"name": {"叶老桂": [[9, 11]]},
                                              "company": {"浙商银行": [[0, 3]]}}},
        {"text": "生生不息"},
        {"text": "北京北京", "label": {"address": {"北京": [[0, 1], [2, 3]]}}},
    ]
    path = write(tmp_path, "train.json", "\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n\n")
    corpus = read_corpus(path)
    assert corpus.format == "cluener" and corpus.scheme is None
    assert spans(corpus.examples[0]) == [("浙商银行", "company"), ("叶老桂", "name")]
    assert corpus.examples[1].entities == []
    assert spans(corpus.examples[2]) == [("北京", "address"), ("北京", "address")]
    assert corpus.examples[2].source == f"{path}:3"


def test_cluener_mention_mismatch(tmp_path):
    line = {"text": "叶老桂博士", "label": {"name": {"叶老桂": [[0, 1]]}}}
    path = write(tmp_path, "dev.json", "\n" + json.dumps(line, ensure_ascii=False))
    with pytest.raises(DataError, match=r"dev\.json:2: name '叶老桂' at \[0, 1\] does not match the text there: '叶老'"):
        read_jsonl(path)


def test_entities_format_with_label_alias(tmp_path):
    lines = [
        {"text": "张三在北京", "entities": [{"start": 3, "end": 5, "label": "LOC"},
                                        {"start": 0, "end": 2, "type": "PER", "text": "张三"}]},
        {"text": "无", "entities": []},
    ]
    path = write(tmp_path, "x.jsonl", "\n".join(json.dumps(x, ensure_ascii=False) for x in lines))
    corpus = read_jsonl(path)
    assert corpus.format == "entities"
    assert spans(corpus.examples[0]) == [("张三", "PER"), ("北京", "LOC")]


GT_LINES = [
    {
        "source": "张三在亚马逊工作",
        "ner-job": {"annotations": {"entities": [
            {"label": "ORG", "startOffset": 3, "endOffset": 6},
            {"label": "PER", "startOffset": 0, "endOffset": 2},
        ], "labels": [{"label": "PER"}, {"label": "ORG"}]}},
        "ner-job-metadata": {"job-name": "labeling-job/ner-job", "type": "groundtruth/text-span",
                             "human-annotated": "yes", "creation-date": "2024-01-01T00:00:00"},
    },
    {"source": "今天没有实体", "ner-job-metadata": {"failure-reason": "none"}},
]


def test_groundtruth_manifest(tmp_path):
    path = write(tmp_path, "output.manifest", "\n".join(json.dumps(x, ensure_ascii=False) for x in GT_LINES))
    corpus = read_corpus(path)
    assert corpus.format == "groundtruth"
    assert spans(corpus.examples[0]) == [("张三", "PER"), ("亚马逊", "ORG")]
    assert corpus.examples[1].text == "今天没有实体" and corpus.examples[1].entities == []


@pytest.mark.parametrize(
    "lines, line, fragment",
    [
        (['{"text": "a", "entities": []}', '{"text": "b", "entities": [}'], 2, "invalid JSON"),
        (['{"text": "张三", "entities": [{"start": 0, "end": 3, "type": "PER"}]}'], 1, "out of range"),
        (['{"text": "张三", "entities": [{"start": 1, "end": 1, "type": "PER"}]}'], 1, "out of range"),
        (['{"text": "张三", "entities": [{"start": 0, "end": 2, "type": "PER", "text": "张"}]}'], 1,
         "does not match"),
        (['{"text": "张三", "entities": []}', '{"text": "张三", "label": {}}'], 2,
         "line is in cluener format but earlier lines are entities"),
        (['[1, 2]'], 1, "expected a JSON object"),
        (['{"words": ["a"]}'], 1, "expected a 'text' key"),
        (['{"source": "张三", "job": {"annotations": {"entities": '
          '[{"label": "PER", "startOffset": 0, "endOffset": 9}]}}}'], 1, "out of range"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path, lines, line, fragment):
    path = write(tmp_path, "data.jsonl", "\n".join(lines))
    with pytest.raises(DataError) as info:
        read_jsonl(path)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert fragment in str(info.value)


def test_read_corpus_detects_format_by_content(tmp_path):
    path = write(tmp_path, "data.txt", '{"text": "张三", "entities": [{"start": 0, "end": 2, "type": "PER"}]}\n')
    assert read_corpus(path).format == "entities"
    # A CoNLL file whose first character is "{" stays CoNLL.
    path = write(tmp_path, "brace.txt", "{\tO\n张\tS-PER\n")
    assert read_corpus(path).format == "conll"
    with pytest.raises(ValueError, match="unknown corpus format"):
        read_corpus(path, format="xml")


# --- writers and round trips -------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["bio", "bioes", "bmes"])
def test_conll_round_trip(tmp_path, scheme):
    examples = make_synthetic_corpus(60, seed=3) + [Example("a b", [Entity(0, 3, "X")])]
    path = write_conll(examples, tmp_path / "out.txt", scheme=scheme)
    corpus = read_conll(path)
    assert corpus.scheme == scheme and corpus.repairs == 0
    assert [(ex.text, ex.entities) for ex in corpus.examples] == [(ex.text, ex.entities) for ex in examples]
    # Read → write → read again gives identical bytes.
    again = write_conll(corpus.examples, tmp_path / "again.txt", scheme=scheme)
    assert again.read_bytes() == path.read_bytes()


def test_jsonl_round_trip(tmp_path):
    examples = make_synthetic_corpus(60, seed=4) + [Example("", [])]
    path = write_jsonl(examples, tmp_path / "out.jsonl")
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert all(e["text"] == first["text"][e["start"] : e["end"]] for e in first["entities"])
    corpus = read_corpus(path)
    assert [(ex.text, ex.entities) for ex in corpus.examples] == [(ex.text, ex.entities) for ex in examples]


def test_write_conll_refuses_newlines(tmp_path):
    with pytest.raises(ValueError, match="CoNLL cannot hold"):
        write_conll([Example("a\nb", [], "x:1")], tmp_path / "bad.txt")


def test_synthetic_split_files_read_back(tmp_path):
    paths = write_synthetic_split(tmp_path / "synth", seed=1, n_train=50, n_dev=10, n_test=10)
    assert sorted(paths) == ["dev", "test", "train"]
    counts = {name: len(read_corpus(path)) for name, path in paths.items()}
    assert counts == {"train": 50, "dev": 10, "test": 10}
    assert read_corpus(paths["train"]).scheme == "bio"


# --- the real MSRA corpus, when available ------------------------------------------------------


@pytest.mark.skipif(not (MSRA_DIR / "dev.txt").exists(), reason=f"MSRA corpus not found at {MSRA_DIR}")
def test_msra_dev_counts():
    corpus = read_corpus(MSRA_DIR / "dev.txt")
    assert corpus.scheme == "bio" and corpus.repairs == 0
    assert len(corpus.examples) == 3000
    assert sum(len(ex.text) for ex in corpus.examples) == 142_923
    counts: dict[str, int] = {}
    for ex in corpus.examples:
        for ent in ex.entities:
            counts[ent.type] = counts.get(ent.type, 0) + 1
    assert counts == {"LOC": 2369, "ORG": 1320, "PER": 1139}
