"""Bad input against the real server (issue 10): each case gets a 4xx with a JSON error saying
what was wrong, or a correct answer — and the server keeps serving afterwards. Plus the batch
transform contract: one output line per input line, in order, for both batch strategies.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse

import pytest
from serving_helpers import ThreadServer, assert_same_records, error_of, expected, lines_of, request

from albert_ner.predict import Predictor

MAX_PAYLOAD_BYTES = 2 * 2**20  # room for the 1 MB text; the over-limit case sends more
GOOD = "国务院总理李鹏今天在北京会见了日本外务大臣。"


@pytest.fixture(scope="module")
def served(trained_model):
    server = ThreadServer(trained_model, max_payload_bytes=MAX_PAYLOAD_BYTES)
    assert server.wait_loaded(), server.batcher.error
    predictor = Predictor.from_model_dir(trained_model)
    yield server.url, predictor
    # After every case above: still up, still right.
    status, _, out = request(server.url + "/invocations", json.dumps({"text": GOOD}).encode(), "application/json")
    assert status == 200
    assert_same_records(json.loads(out)["predictions"], expected(predictor, [GOOD]))
    server.stop()


@pytest.fixture
def url(served):
    yield served[0] + "/invocations"
    # The server keeps serving after each bad request.
    status, _, out = request(served[0] + "/ping")
    assert status == 200, out


def invoke_json(url, value) -> tuple[int, dict]:
    status, _, out = request(url, json.dumps(value, ensure_ascii=False).encode("utf-8"), "application/json")
    return status, json.loads(out)


def test_malformed_json(url):
    status, message = error_of(request(url, b'{"text": "abc"', "application/json"))
    assert status == 400 and "not valid JSON" in message and "line 1 column" in message


def test_wrong_content_type(url):
    status, message = error_of(request(url, b"text=abc", "application/x-www-form-urlencoded"))
    assert status == 415 and "application/x-www-form-urlencoded" in message and "text/plain" in message
    status, message = error_of(request(url, b"abc"))  # urllib's default for a body
    assert status == 415


def test_missing_text(url):
    status, message = error_of(request(url, json.dumps({"txt": "abc"}).encode(), "application/json"))
    assert status == 400 and '"text"' in message
    status, message = error_of(request(url, json.dumps([{"txt": "abc"}]).encode(), "application/json"))
    assert status == 400 and "item 0" in message and '"text"' in message


@pytest.mark.parametrize("item,kind", [(3, "a number"), (None, "null"), (["a"], "a list"), ({"text": 5}, "a number")])
def test_non_string_items(url, item, kind):
    status, message = error_of(request(url, json.dumps({"texts": ["ok", item]}).encode(), "application/json"))
    assert status == 400 and "texts[1]" in message and kind in message


def test_empty_text_and_empty_body(url, served):
    status, body = invoke_json(url, {"text": ""})
    assert status == 200 and body == {"predictions": [{"text": "", "entities": []}]}
    status, message = error_of(request(url, b"", "application/json"))
    assert status == 400 and "empty" in message


@pytest.mark.slow  # one 350,000-character text: about a minute of model time on two busy cores
def test_a_1_mb_text(url, served):
    """Answered in full, and the server answers /ping while the model works on it."""
    text = (GOOD * 20_000)[: 2**20 // 3]  # ≈1 MB of UTF-8 (3 bytes a character)
    assert len(text.encode("utf-8")) > 10**6
    answer = {}
    worker = threading.Thread(target=lambda: answer.update(zip(("status", "body"), invoke_json(url, {"text": text}))))
    worker.start()
    time.sleep(1.0)
    started = time.monotonic()
    assert request(served[0] + "/ping")[0] == 200
    assert time.monotonic() - started < 5  # the event loop is not waiting for the model
    worker.join(600)
    assert answer["status"] == 200
    (record,) = answer["body"]["predictions"]
    assert record["text"] == text
    spans = [(e["start"], e["end"]) for e in record["entities"]]
    assert all(text[e["start"] : e["end"]] == e["text"] != "" for e in record["entities"])
    assert spans == sorted(spans) and all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    assert len(spans) > 1000 and spans[-1][1] > 0.99 * len(text)  # tagged to the end, not a prefix


def test_a_payload_over_the_limit(url):
    status, message = error_of(request(url, b"x" * (MAX_PAYLOAD_BYTES + 1), "text/plain"))
    assert status == 413 and f"{MAX_PAYLOAD_BYTES + 1} bytes" in message and "SAGEMAKER_MAX_PAYLOAD_IN_MB" in message


def test_a_chunked_payload_over_the_limit(url):
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        chunks = (b"x" * 65536 for _ in range(MAX_PAYLOAD_BYTES // 65536 + 2))
        conn.request("POST", parts.path, body=chunks, headers={"Content-Type": "text/plain"}, encode_chunked=True)
        response = conn.getresponse()
        assert response.status == 413 and "exceeds the limit" in json.loads(response.read())["error"]
    finally:
        conn.close()


def test_no_content_length(url):
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.putrequest("POST", parts.path)
        conn.putheader("Content-Type", "text/plain")
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 411 and "Content-Length" in json.loads(response.read())["error"]
    finally:
        conn.close()


def test_invalid_utf8(url):
    status, message = error_of(request(url, b'{"text": "\xe5\x8c"}', "application/json"))
    assert status == 400 and "not UTF-8" in message and "byte" in message


def test_a_lone_surrogate_escape(url):
    """JSON may spell half a UTF-16 pair ("\\ud800"); no UTF-8 answer can repeat that text."""
    status, message = error_of(request(url, b'{"texts": ["ok", "a\\ud800b"]}', "application/json"))
    assert status == 400 and "texts[1]" in message and "surrogate" in message


def test_a_json_array_of_10000_texts(url, served):
    texts = [f"{i}号，李鹏在北京。" if i % 3 else "" for i in range(10_000)]
    status, body = invoke_json(url, texts)
    assert status == 200
    records = body["predictions"]
    assert [r["text"] for r in records] == texts
    assert_same_records(records, expected(served[1], texts))


# ---------------------------------------------------------------- batch transform
def test_json_lines_one_output_line_per_input_line_in_order(url, served):
    """MultiRecord: many lines in one request; a bad line answered in its place."""
    lines = [json.dumps({"text": GOOD}), '{"text": 1}', json.dumps("李鹏"), "{oops", json.dumps({"text": ""}),
             json.dumps({"text": "北京", "id": 7})]
    status, headers, out = request(url, ("\n".join(lines) + "\n").encode(), "application/jsonlines")
    assert status == 200 and headers["Content-Type"] == "application/jsonlines"
    records = lines_of(out)
    assert len(records) == len(lines)
    want = expected(served[1], [GOOD, "李鹏", "", "北京"])
    assert_same_records([records[i] for i in (0, 2, 4, 5)], want)
    assert "line 2" in records[1]["error"] and "a number" in records[1]["error"]
    assert "line 4" in records[3]["error"]
    # JoinSource=Input joins an input line with the output line in the same place: every
    # output line is one JSON object.
    assert all(isinstance(r, dict) for r in records)


def test_single_record_requests_match_the_multi_record_answer(url, served):
    lines = [GOOD, "李鹏", "{oops"]
    multi = lines_of(request(url, "\n".join(json.dumps(x) if x != "{oops" else x for x in lines).encode(),
                             "application/jsonlines")[2])
    single = []
    for line in lines:
        body = (json.dumps(line) if line != "{oops" else line).encode()
        status, _, out = request(url, body, "application/jsonlines")
        assert status == 200  # a bad record never fails the request (batch transform would stop)
        single += lines_of(out)
    # Line numbers in error messages count within a request; everything else is the same.
    assert_same_records(single[:2], multi[:2])  # other batches: scores within the tolerance
    assert single[2]["error"].replace("line 1:", "line 3:") == multi[2]["error"]


def test_several_json_documents_one_per_line_are_json_lines(url, served):
    """What batch transform sends for ContentType application/json with SplitType Line."""
    body = "\n".join(json.dumps({"text": t}) for t in (GOOD, "李鹏")).encode()
    status, headers, out = request(url, body, "application/json")
    assert status == 200 and headers["Content-Type"] == "application/jsonlines"
    assert_same_records(lines_of(out), expected(served[1], [GOOD, "李鹏"]))


def test_execution_parameters(served):
    status, headers, out = request(served[0] + "/execution-parameters")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(out) == {"MaxConcurrentTransforms": 2, "BatchStrategy": "MultiRecord", "MaxPayloadInMB": 2}
