"""The SageMaker inference server over real HTTP: /ping, /invocations in every format, errors.

One server (uvicorn in a thread of this process, on a free loopback port) serves the session's
micro model; answers must equal `Predictor.predict` on the same texts, with exact character
offsets. One more test runs `container/serve` as the container would (environment only,
SIGTERM to stop). Bad input, batch transform and batching: tests/test_server_*.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import pytest
from serving_helpers import ThreadServer, assert_same_records, error_of, expected, lines_of, request

from albert_ner.data.example import Example
from albert_ner.predict import Predictor
from albert_ner.serving.batcher import DynamicBatcher
from albert_ner.serving.loadtest import free_port
from albert_ner.serving.requests import SUPPORTED_CONTENT_TYPES
from albert_ner.serving.server import http_stack

REPO = Path(__file__).resolve().parents[1]
TEXTS = [
    "任文博出生于拉萨，财政部发言人曾芳表示。",
    "",
    "ＡＢＣ公司 与 Hello World 在 2024 年合作\t完成",
    "北京" * 70,  # several windows of the micro model
    "é ü 😀 \u3000 〇",
]
MAX_PAYLOAD_BYTES = 10_000  # room for the requests below, easy to exceed on purpose


@pytest.fixture(scope="module")
def served(trained_model):
    server = ThreadServer(trained_model, max_payload_bytes=MAX_PAYLOAD_BYTES)
    assert server.wait_loaded(), server.batcher.error
    # An independent Predictor: what the server answers must equal what the library predicts.
    yield server.url, Predictor.from_model_dir(trained_model)
    server.stop()


def check_offsets(records, texts):
    assert [r["text"] for r in records] == texts
    for r in records:
        for e in r["entities"]:
            assert {"type", "start", "end", "text"} <= set(e)
            assert r["text"][e["start"] : e["end"]] == e["text"] != ""


def test_ping_ready(served):
    url, _ = served
    status, _, body = request(url + "/ping")
    assert status == 200 and json.loads(body)["status"] == "ready"


@pytest.mark.parametrize(
    "content_type,body",
    [
        ("application/json", json.dumps({"texts": TEXTS})),
        ("application/json; charset=utf-8", json.dumps({"instances": [{"text": t} for t in TEXTS]})),
        ("application/json", json.dumps(TEXTS, ensure_ascii=False)),
    ],
)
def test_json_input_answers_json(served, content_type, body):
    url, predictor = served
    status, headers, out = request(url + "/invocations", body.encode("utf-8"), content_type)
    assert status == 200 and headers["Content-Type"] == "application/json"
    records = json.loads(out)["predictions"]
    check_offsets(records, TEXTS)
    assert_same_records(records, expected(predictor, TEXTS))
    assert sum(len(r["entities"]) for r in records) > 0  # the micro model finds something


def test_single_text_json(served):
    url, predictor = served
    status, _, out = request(url + "/invocations", json.dumps({"text": TEXTS[0]}).encode(), "application/json")
    assert status == 200 and list(json.loads(out)) == ["predictions"]
    assert_same_records(json.loads(out)["predictions"], expected(predictor, TEXTS[:1]))


def test_text_lines_and_json_lines_answer_json_lines(served):
    url, predictor = served
    want = expected(predictor, TEXTS)
    # TEXTS[2] holds a tab, not a newline, so one text is one line (the empty one included).
    status, headers, out = request(url + "/invocations", ("\n".join(TEXTS) + "\n").encode(), "text/plain")
    assert status == 200 and headers["Content-Type"] == "application/jsonlines"
    records = [json.loads(line) for line in out.decode().splitlines()]
    check_offsets(records, TEXTS)
    assert_same_records(records, want)

    lines = "\n".join(json.dumps({"text": t} if i % 2 else t) for i, t in enumerate(TEXTS))
    status, _, out = request(url + "/invocations", lines.encode(), "application/jsonlines")
    assert status == 200
    assert_same_records([json.loads(line) for line in out.decode().splitlines()], want)

    # Accept overrides the default format.
    status, headers, out = request(url + "/invocations", lines.encode(), "application/jsonlines",
                                   accept="application/json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert_same_records(json.loads(out)["predictions"], want)


def test_errors_name_the_problem(served):
    url = served[0] + "/invocations"
    status, message = error_of(request(url, b'{"texts": [', "application/json"))
    assert status == 400 and "not valid JSON" in message
    status, message = error_of(request(url, b'{"texts": ["ok", 3]}', "application/json"))
    assert status == 400 and "texts[1]" in message
    status, message = error_of(request(url, b'{"text": "\xff\xfe"}', "application/json"))
    assert status == 400 and "UTF-8" in message
    status, message = error_of(request(url, b"<x/>", "application/xml"))
    assert status == 415 and SUPPORTED_CONTENT_TYPES in message and "application/xml" in message
    status, message = error_of(request(url, b"a", "text/plain", accept="text/html"))
    assert status == 406 and "application/jsonlines" in message
    status, message = error_of(request(url, b"x" * 20_000, "text/plain"))
    assert status == 413 and "20000 bytes" in message
    status, _ = error_of(request(served[0] + "/nowhere"))
    assert status == 404


def test_a_bad_line_gets_an_error_line_in_its_place(served):
    """Line formats answer every line: one bad record does not fail its neighbours."""
    url, predictor = served
    status, _, out = request(url + "/invocations", b'"a"\n{oops\n"b"\n', "application/jsonlines")
    assert status == 200
    records = lines_of(out)
    assert_same_records([records[0], records[2]], expected(predictor, ["a", "b"]))
    assert set(records[1]) == {"error"} and "line 2" in records[1]["error"] and "JSON" in records[1]["error"]
    status, _, out = request(url + "/invocations", b"ok\n\xff\xfe\n", "text/plain")
    assert status == 200
    records = lines_of(out)
    assert records[0]["text"] == "ok" and "line 2" in records[1]["error"] and "UTF-8" in records[1]["error"]


def test_missing_model_pings_503_with_the_reason(tmp_path):
    server = ThreadServer(tmp_path / "no-model")
    try:
        assert not server.wait_loaded(timeout=60)
        status, message = error_of(request(server.url + "/ping"))
        assert status == 503 and "no-model" in message and "missing" in message
        status, message = error_of(request(server.url + "/invocations", b"a", "text/plain"))
        assert status == 503 and "no-model" in message
    finally:
        server.stop()


class BreaksOnBoom:
    """A stand-in predictor that fails on one text, to see what the client gets."""

    def predict(self, texts):
        if "boom" in texts:
            raise RuntimeError("secret internals")
        return [Example(t, []) for t in texts]


def test_an_unexpected_failure_is_a_500_without_details_and_the_server_goes_on(tmp_path):
    server = ThreadServer(tmp_path, batcher=DynamicBatcher(BreaksOnBoom))
    try:
        assert server.wait_loaded()
        status, message = error_of(request(server.url + "/invocations", b"boom", "text/plain"))
        assert status == 500 and "secret" not in message and "log" in message
        status, _, out = request(server.url + "/invocations", b"fine", "text/plain")
        assert status == 200 and lines_of(out) == [{"text": "fine", "entities": []}]
    finally:
        server.stop()


def test_container_serve_uses_the_sagemaker_environment(trained_model, tmp_path):
    """`serve` with no arguments: model from $SAGEMAKER_BASE_DIR/model, port from the env."""
    shutil.copytree(trained_model, tmp_path / "model")  # as extracted from model.tar.gz
    port = free_port()
    env = dict(os.environ, SAGEMAKER_BASE_DIR=str(tmp_path), SAGEMAKER_BIND_TO_PORT=str(port),
               SAGEMAKER_BATCH="true", SAGEMAKER_BATCH_STRATEGY="SingleRecord")
    # The log goes to a file: a pipe nobody reads fills up with /ping lines and stalls the server.
    log_file = tmp_path / "serve.log"
    with open(log_file, "w") as stderr:
        child = subprocess.Popen([sys.executable, str(REPO / "container" / "serve")], env=env,
                                 stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 180  # TensorFlow's import alone takes a minute on busy cores
        status = None
        while time.time() < deadline and child.poll() is None:
            try:
                status = request(url + "/ping")[0]
            except (urllib.error.URLError, ConnectionError):
                status = None
            if status == 200:
                break
            time.sleep(0.25)
        assert status == 200, f"never ready (exit {child.poll()})"
        status, _, out = request(url + "/invocations", TEXTS[0].encode(), "text/plain")
        assert status == 200 and json.loads(out)["text"] == TEXTS[0]
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=30) == 0
        log = log_file.read_text()
        assert f":{port} (batch transform (SingleRecord)" in log
        assert f"queue limit 256, {http_stack()})" in log  # uvicorn's "auto" choice, logged
        assert '"POST /invocations" 200' in log and "Traceback" not in log
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
