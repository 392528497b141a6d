"""Offline batch transform (`serving.batch`, `albert-ner predict` on a file): streamed in chunks,
one output line per input line in order, a bad line answered with {"error": ...} in its place.
"""

from __future__ import annotations

import io
import json

import pytest

from albert_ner.cli import main
from albert_ner.data.example import Example
from albert_ner.serving.batch import input_format_for, predict_lines


class Recorder:
    """Answers each text with an Example of the same text; records the size of every call."""

    def __init__(self):
        self.calls: list[int] = []

    def predict(self, texts):
        self.calls.append(len(texts))
        return [Example(t, []) for t in texts]


def test_chunks_bound_each_model_call_and_keep_the_order():
    lines = [f"句子{i}\n".encode() for i in range(1000)]
    recorder = Recorder()
    results = list(predict_lines(recorder, iter(lines), "text", chunk_chars=100))
    assert [example.text for _, example in results] == [f"句子{i}" for i in range(1000)]
    assert len(recorder.calls) > 10 and max(recorder.calls) <= 100 // 4 + 1


def test_the_stream_is_consumed_lazily():
    """Reading stops where the output does: a file is never read whole."""
    consumed = []

    def lines():
        for i in range(10_000):
            consumed.append(i)
            yield f"t{i}\n"

    stream = predict_lines(Recorder(), lines(), "text", chunk_chars=50)
    first = [next(stream) for _ in range(3)]
    assert [e.text for _, e in first] == ["t0", "t1", "t2"] and len(consumed) < 100


def test_bad_lines_get_errors_in_their_place():
    data = b'"a"\n{oops\n\n{"text": 3}\n{"text": "b"}\r\n'
    results = list(predict_lines(Recorder(), io.BytesIO(data), "jsonl"))
    assert len(results) == 4  # the blank line is not a record
    assert results[0][1].text == "a" and results[3][1].text == "b"
    assert results[1][1] is None and "line 2" in results[1][0].message
    assert results[2][1] is None and "line 4" in results[2][0].message and "a number" in results[2][0].message
    text = list(predict_lines(Recorder(), io.BytesIO(b"ok\n\xff\n\nlast"), "text"))
    assert [e.text if e is not None else r.message.split(":")[0] for r, e in text] == ["ok", "line 2", "", "last"]


def test_input_format_from_the_file_name():
    assert input_format_for("a.JSONL") == input_format_for("b.ndjson") == "jsonl"
    assert input_format_for("a.txt") == input_format_for(None) == "text"
    assert input_format_for("a.jsonl", "text") == "text"
    with pytest.raises(ValueError, match="unknown input format"):
        input_format_for("a", "csv")


def test_predict_cli_streams_json_lines_with_errors_and_progress(trained_model, tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_bytes('{"text": "李鹏在北京。"}\n{oops\n"国务院"\n'.encode())
    out = tmp_path / "out.jsonl"
    assert main(["predict", "--model-dir", str(trained_model), "--input", str(source), "--output", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r.get("text") for r in records] == ["李鹏在北京。", None, "国务院"]
    assert "line 2" in records[1]["error"]
    assert "predicted 3 lines (1 unreadable)" in capsys.readouterr().err
