"""Readiness with several workers (`serving.readiness`): /ping is 200 only once every worker has
loaded its model, and a worker that failed makes every worker's /ping say why.
"""

from __future__ import annotations

import json
import os

from serving_helpers import ThreadServer, request

from albert_ner.data.example import Example
from albert_ner.serving.batcher import DynamicBatcher
from albert_ner.serving.readiness import ReadinessBoard


class Echo:
    def predict(self, texts):
        return [Example(t, []) for t in texts]


def board_of(directory, pid, workers=2) -> ReadinessBoard:
    """A board that writes as worker `pid` (the real one uses its own process id)."""
    board = ReadinessBoard(str(directory), workers)
    board._pid = pid
    return board


def test_all_workers_must_be_ready(tmp_path):
    first, second = board_of(tmp_path, 101), board_of(tmp_path, 102)
    assert first.not_ready_reason() == "0 of 2 workers have loaded the model; the others are still loading"
    first.record(None)
    assert first.not_ready_reason().startswith("1 of 2 workers")
    second.record(None)
    assert first.not_ready_reason() is None and second.not_ready_reason() is None
    second.withdraw()  # a worker that stopped no longer counts
    assert first.not_ready_reason().startswith("1 of 2 workers")


def test_a_failed_worker_is_reported_by_every_worker(tmp_path):
    first, second = board_of(tmp_path, 101), board_of(tmp_path, 102)
    first.record(None)
    second.record("model not loaded from /m: OSError: no such file")
    assert first.not_ready_reason() == "worker 102 failed: model not loaded from /m: OSError: no such file"


def test_a_single_worker_needs_no_board():
    board = ReadinessBoard(None, 1)
    board.record(None)
    assert board.not_ready_reason() is None


def test_ping_waits_for_the_other_worker(tmp_path):
    ready_dir = tmp_path / "ready"
    ready_dir.mkdir()
    server = ThreadServer(tmp_path, batcher=DynamicBatcher(lambda: Echo()), workers=2, ready_dir=str(ready_dir))
    try:
        assert server.wait_loaded()
        own = f"ready-{os.getpid()}"
        # This worker records itself once its load has ended (a task of the app's lifespan).
        deadline_polls = 200
        while own not in os.listdir(ready_dir) and deadline_polls:
            deadline_polls -= 1
            request(server.url + "/ping")
        assert os.listdir(ready_dir) == [own]
        status, _, body = request(server.url + "/ping")
        assert status == 503 and json.loads(body) == {
            "status": "loading", "error": "1 of 2 workers have loaded the model; the others are still loading"}
        board_of(ready_dir, 1).record(None)  # the other worker finishes loading
        status, _, body = request(server.url + "/ping")
        assert status == 200 and json.loads(body)["status"] == "ready"
    finally:
        server.stop()
    assert os.listdir(ready_dir) == ["ready-1"]  # a stopped worker withdraws
