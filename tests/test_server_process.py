"""`albert-ner serve` as a process: equal to `albert-ner predict`, SIGTERM drains in-flight requests
and exits 0, a broken model directory is reported (never half-working), more than one worker.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from serving_helpers import assert_same_records, lines_of, request

from albert_ner.cli import main
from albert_ner.serving.loadtest import ServerProcess

TEXTS = ["任文博出生于拉萨，财政部发言人曾芳表示。", "", "国务院总理李鹏今天在北京会见了日本外务大臣。",
         "新华社北京电", "北京" * 30]


def test_server_answers_equal_albert_ner_predict(trained_model, tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    assert main(["predict", "--model-dir", str(trained_model), "--input", str(source)]) == 0
    offline = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sum(len(r["entities"]) for r in offline) > 0
    with ServerProcess(trained_model, log_path=tmp_path / "serve.log") as server:
        server.wait_ready()
        status, _, out = request(server.url + "/invocations", source.read_bytes(), "text/plain")
        assert status == 200
        assert_same_records(lines_of(out), offline)  # entities, and scores within the tolerance
        status, _, out = request(server.url + "/invocations", json.dumps({"texts": TEXTS}).encode(), "application/json")
        assert_same_records(json.loads(out)["predictions"], offline)
        assert server.stop() == 0


def test_sigterm_finishes_in_flight_requests_then_exits_0(trained_model, tmp_path):
    log = tmp_path / "serve.log"
    server = ServerProcess(trained_model, log_path=log)
    try:
        server.wait_ready()
        # Requests big enough to keep the model busy for a few seconds after SIGTERM.
        bodies = [("\n".join(f"{i}-{j}，李鹏在北京会见了日本外务大臣。" * 3 for j in range(300))).encode() for i in range(6)]
        answers = [None] * len(bodies)

        def send(i):
            answers[i] = request(server.url + "/invocations", bodies[i], "text/plain")

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # sent and accepted
        server.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(300)
        assert server.process.wait(300) == 0
    finally:
        server.stop()
    text = log.read_text()
    assert "SIGTERM: no new connections; finishing" in text
    for body, (status, _, out) in zip(bodies, answers):
        assert status == 200
        assert [r["text"] for r in lines_of(out)] == body.decode().split("\n")
    assert "Traceback" not in text and text.rstrip().endswith("stopped")


def test_a_broken_model_dir_fails_ping_with_the_reason_in_the_log(trained_model, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("labels.json", "vocab.txt", "model_config.json"):
        (broken / name).write_bytes((trained_model / name).read_bytes())
    (broken / "1").mkdir()
    (broken / "1" / "saved_model.pb").write_bytes(b"not a protobuf")
    log = tmp_path / "serve.log"
    with ServerProcess(broken, log_path=log) as server:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "model not loaded" not in log.read_text():
            time.sleep(0.2)
        status, _, out = request(server.url + "/ping")
        assert status == 503 and json.loads(out)["status"] == "failed"
        assert str(broken) in json.loads(out)["error"]
        status, _, out = request(server.url + "/invocations", b"a", "text/plain")
        assert status == 503  # never a half-working server
        assert server.stop() == 0
    assert f"model not loaded from {broken}" in log.read_text()


def test_a_bad_setting_is_a_one_line_error(trained_model, monkeypatch, capsys):
    monkeypatch.setenv("ALBERT_NER_MAX_BATCH_TOKENS", "lots")
    assert main(["serve", "--model-dir", str(trained_model)]) == 2
    assert "ALBERT_NER_MAX_BATCH_TOKENS='lots'" in capsys.readouterr().err


@pytest.mark.slow  # two processes, each loading TensorFlow and the model
def test_two_workers(trained_model, tmp_path):
    log = tmp_path / "serve.log"
    with ServerProcess(trained_model, "--workers", "2", log_path=log) as server:
        server.wait_ready()  # /ping only: its 200 must mean both workers have the model
        assert log.read_text().count("loaded and warmed up in") == 2
        # New connections are spread over both workers; none may find its model loading.
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: request(server.url + "/invocations", "\n".join(TEXTS).encode(),
                                                      "text/plain"), range(16)))
        assert [status for status, _, _ in answers] == [200] * 16
        assert all([r["text"] for r in lines_of(out)] == TEXTS for _, _, out in answers)
        status, _, out = request(server.url + "/execution-parameters")
        assert json.loads(out)["MaxConcurrentTransforms"] == 4
        assert server.stop() == 0
    assert "2 worker(s)" in log.read_text()
