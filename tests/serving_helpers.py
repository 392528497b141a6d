"""The real server (uvicorn + the starlette app) on a free loopback port, in a thread of the test
process, and plain-HTTP requests to it. Used by tests/test_serving.py and tests/test_server_*.py.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import uvicorn

from albert_ner.data.example import records_difference

from albert_ner.serving.app import create_app
from albert_ner.serving.settings import ServeSettings


class ThreadServer:
    """`create_app(settings)` under uvicorn on 127.0.0.1:<free port>, stopped by `stop()`."""

    def __init__(self, model_dir, batcher=None, **settings):
        self.settings = ServeSettings(model_dir=str(model_dir), host="127.0.0.1", port=0, **settings)
        self.app = create_app(self.settings, batcher)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning",
                                access_log=False, lifespan="on")
        self.socket = config.bind_socket()
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self.thread.start()

    @property
    def batcher(self):
        return self.app.state.batcher

    def wait_loaded(self, timeout: float = 120.0) -> bool:
        """True once the model is ready; False if loading failed."""
        deadline = time.monotonic() + timeout
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        self.batcher.loaded.wait(max(0.0, deadline - time.monotonic()))
        return self.batcher.status == "ready"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)


def request(url, body=None, content_type=None, accept=None, method=None, headers=None):
    """(status, headers, body bytes) — error statuses included, never raised."""
    headers = dict(headers or {})
    if content_type:
        headers["Content-Type"] = content_type
    if accept:
        headers["Accept"] = accept
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def expected(predictor, texts):
    """What the server must answer for `texts`: the library's predictions as records."""
    return [
        {"text": ex.text, "entities": [e.to_json(ex.text) for e in ex.entities]}
        for ex in predictor.predict(texts)
    ]


def assert_same_records(got, want):
    """Prediction records agree: every key and entity exactly, scores within
    `data.example.SCORE_TOLERANCE` — a score may differ in its last digit with the batch it
    rode in (other batch shapes add in another order; AVX2 and AVX-512 kernels differ too)."""
    difference = records_difference(got, want)
    assert difference is None, difference


def error_of(status_headers_body):
    """(status, message) of an error answer, which must be JSON without a traceback."""
    status, headers, body = status_headers_body
    assert headers["Content-Type"] == "application/json"
    message = json.loads(body)["error"]
    assert "Traceback" not in message
    return status, message


def lines_of(body: bytes) -> list[dict]:
    return [json.loads(line) for line in body.decode("utf-8").splitlines()]
