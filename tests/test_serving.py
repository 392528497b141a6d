"""The SageMaker inference server over real HTTP: /ping, /invocations in every format, errors.

One server (a thread in this process) serves the session's micro model; answers must equal
`Predictor.predict` on the same texts, with exact character offsets. One more test runs
`container/serve` as the container would (environment only, SIGTERM to stop).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from albert_ner.predict import Predictor
from albert_ner.serving.http_app import SUPPORTED_CONTENT_TYPES, create_server

REPO = Path(__file__).resolve().parents[1]
TEXTS = [
    "任文博出生于拉萨，财政部发言人曾芳表示。",
    "",
    "ＡＢＣ公司 与 Hello World 在 2024 年合作\t完成",
    "北京" * 70,  # several windows of the micro model
    "é ü 😀 \u3000 〇",
]
MAX_PAYLOAD_MB = "0.01"  # ~10 KB: room for the requests below, easy to exceed on purpose


def request(url, body=None, content_type=None, accept=None, method=None):
    """(status, headers, body bytes) — error statuses included, never raised."""
    headers = {}
    if content_type:
        headers["Content-Type"] = content_type
    if accept:
        headers["Accept"] = accept
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def start(model_dir):
    server = create_server(model_dir, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="module")
def served(trained_model):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAGEMAKER_MAX_PAYLOAD_IN_MB", MAX_PAYLOAD_MB)
        server, url = start(trained_model)
    assert server.model.wait(timeout=60), server.model.error
    # An independent Predictor: what the server answers must equal what the library predicts.
    yield url, Predictor.from_model_dir(trained_model)
    server.shutdown()
    server.server_close()


def expected(predictor, texts):
    return [
        {"text": ex.text, "entities": [e.to_json(ex.text) for e in ex.entities]}
        for ex in predictor.predict(texts)
    ]


def check_offsets(records, texts):
    assert [r["text"] for r in records] == texts
    for r in records:
        for e in r["entities"]:
            assert set(e) == {"type", "start", "end", "text"}
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
    assert records == expected(predictor, TEXTS)
    assert sum(len(r["entities"]) for r in records) > 0  # the micro model finds something


def test_single_text_json(served):
    url, predictor = served
    status, _, out = request(url + "/invocations", json.dumps({"text": TEXTS[0]}).encode(), "application/json")
    assert status == 200 and json.loads(out) == {"predictions": expected(predictor, TEXTS[:1])}


def test_text_lines_and_json_lines_answer_json_lines(served):
    url, predictor = served
    want = expected(predictor, TEXTS)
    # TEXTS[2] holds a tab, not a newline, so one text is one line (the empty one included).
    status, headers, out = request(url + "/invocations", ("\n".join(TEXTS) + "\n").encode(), "text/plain")
    assert status == 200 and headers["Content-Type"] == "application/jsonlines"
    records = [json.loads(line) for line in out.decode().splitlines()]
    check_offsets(records, TEXTS)
    assert records == want

    lines = "\n".join(json.dumps({"text": t} if i % 2 else t) for i, t in enumerate(TEXTS))
    status, _, out = request(url + "/invocations", lines.encode(), "application/jsonlines")
    assert status == 200
    assert [json.loads(line) for line in out.decode().splitlines()] == want

    # Accept overrides the default format.
    status, headers, out = request(url + "/invocations", lines.encode(), "application/jsonlines",
                                   accept="application/json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(out)["predictions"] == want


def error_of(status_body):
    status, headers, body = status_body
    assert headers["Content-Type"] == "application/json"
    message = json.loads(body)["error"]
    assert "Traceback" not in message
    return status, message


def test_errors_name_the_problem(served):
    url = served[0] + "/invocations"
    status, message = error_of(request(url, b'{"texts": [', "application/json"))
    assert status == 400 and "not valid JSON" in message
    status, message = error_of(request(url, b'{"texts": ["ok", 3]}', "application/json"))
    assert status == 400 and "texts[1]" in message
    status, message = error_of(request(url, b'"a"\n{oops\n', "application/jsonlines"))
    assert status == 400 and "line 2" in message
    status, message = error_of(request(url, b"\xff\xfe", "text/plain"))
    assert status == 400 and "UTF-8" in message
    status, message = error_of(request(url, b"<x/>", "application/xml"))
    assert status == 415 and SUPPORTED_CONTENT_TYPES in message and "application/xml" in message
    status, message = error_of(request(url, b"a", "text/plain", accept="text/html"))
    assert status == 406 and "application/jsonlines" in message
    status, message = error_of(request(url, b"x" * 20_000, "text/plain"))
    assert status == 413 and "20000 bytes" in message
    status, _ = error_of(request(served[0] + "/nowhere"))
    assert status == 404


def test_missing_model_pings_503_and_errors_stay_server_side(tmp_path):
    server, url = start(tmp_path / "no-model")
    try:
        assert not server.model.wait(timeout=60)
        status, message = error_of(request(url + "/ping"))
        assert status == 503 and "no-model" in message and "missing" in message
        status, message = error_of(request(url + "/invocations", b"a", "text/plain"))
        assert status == 503 and "no-model" in message

        class Broken:
            def predict(self, texts):
                raise RuntimeError("secret internals")

        server.model.predictor = Broken()  # an unexpected failure: 500, no details leak
        status, message = error_of(request(url + "/invocations", b"a", "text/plain"))
        assert status == 500 and "secret" not in message
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_container_serve_uses_the_sagemaker_environment(trained_model, tmp_path):
    """`serve` with no arguments: model from $SAGEMAKER_BASE_DIR/model, port from the env."""
    shutil.copytree(trained_model, tmp_path / "model")  # as extracted from model.tar.gz
    port = free_port()
    env = dict(os.environ, SAGEMAKER_BASE_DIR=str(tmp_path), SAGEMAKER_BIND_TO_PORT=str(port),
               SAGEMAKER_BATCH="true", SAGEMAKER_BATCH_STRATEGY="SingleRecord")
    child = subprocess.Popen([sys.executable, str(REPO / "container" / "serve")], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 90
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
        log = child.stderr.read()
        assert f":{port} (batch transform (SingleRecord)" in log
        assert '"POST /invocations" 200' in log and "Traceback" not in log
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
