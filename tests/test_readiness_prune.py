"""`ReadinessBoard.prune`: the supervisor drops the outcome files of workers that no longer run, so
a dead worker's ready file cannot stand in for its loading replacement and its failed file cannot
hold /ping at 503 for good (the end-to-end case: tests/test_server_faults.py).
"""

from __future__ import annotations

import os

from albert_ner.serving.readiness import ReadinessBoard
from albert_ner.serving.supervisor import _how_it_ended


def board_of(directory, pid, workers=2) -> ReadinessBoard:
    """A board that writes as worker `pid` (the real one uses its own process id)."""
    board = ReadinessBoard(str(directory), workers)
    board._pid = pid
    return board


def test_a_dead_workers_ready_file_no_longer_counts(tmp_path):
    board_of(tmp_path, 101).record(None)
    board_of(tmp_path, 102).record(None)  # 102 is then killed; 103 replaces it and loads
    assert board_of(tmp_path, 101).not_ready_reason() is None  # the stale file still counts
    assert board_of(tmp_path, 101).prune({101, 103}) == [102]
    assert board_of(tmp_path, 101).not_ready_reason().startswith("1 of 2 workers")
    board_of(tmp_path, 103).record(None)
    assert board_of(tmp_path, 101).not_ready_reason() is None
    assert sorted(os.listdir(tmp_path)) == ["ready-101", "ready-103"]


def test_a_dead_workers_failed_file_stops_blocking_ping(tmp_path):
    board_of(tmp_path, 101).record(None)
    board_of(tmp_path, 102).record("model not loaded from /m: out of memory")
    assert board_of(tmp_path, 101).not_ready_reason().startswith("worker 102 failed")
    (tmp_path / ".ready-102").write_text("")  # a half-written file of the same dead worker
    assert board_of(tmp_path, 101).prune({101, 104}) == [102]
    assert os.listdir(tmp_path) == ["ready-101"]
    assert board_of(tmp_path, 101).not_ready_reason().startswith("1 of 2 workers")


def test_prune_keeps_live_workers_and_other_files(tmp_path):
    board_of(tmp_path, 101).record(None)
    board_of(tmp_path, 102).record("load failed")
    (tmp_path / "notes.txt").write_text("not ours")
    assert board_of(tmp_path, 101).prune({101, 102}) == []
    assert sorted(os.listdir(tmp_path)) == ["failed-102", "notes.txt", "ready-101"]


def test_prune_without_a_directory_does_nothing(tmp_path):
    assert ReadinessBoard(None, 1).prune(set()) == []
    assert ReadinessBoard(str(tmp_path / "gone"), 2).prune(set()) == []  # a stopping server removed it


def test_how_a_worker_ended_reads_like_the_log_says():
    assert _how_it_ended(-9) == "killed by SIGKILL"
    assert _how_it_ended(1) == "exit status 1"
    assert _how_it_ended(None) == "no exit status"
