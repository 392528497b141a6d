"""The load generator (`serving.loadtest`) itself: its HTTP/1.1 reading, reconnecting after the
server closes a connection, CPU pinning of generator and server, and the CPU-set option.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from serving_helpers import ThreadServer

from albert_ner.data.example import Example
from albert_ner.serving.batcher import DynamicBatcher
from albert_ner.serving.loadtest import ServerProcess, _read_response, parse_cpus, run_load_test

needs_affinity = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU pinning is Linux-only")


class Echo:
    def predict(self, texts):
        return [Example(t, []) for t in texts]


def read(raw: bytes):
    async def main():
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        return await _read_response(reader)

    return asyncio.run(main())


def test_responses_with_a_length_chunked_or_until_close():
    status, headers, body = read(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nRetry-After: 2\r\n\r\nhelloEXTRA")
    assert (status, body, headers["retry-after"]) == (200, b"hello", "2")
    chunked = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbusy\r\n3;x=1\r\n!!!\r\n0\r\n\r\n"
    assert read(chunked)[::2] == (503, b"busy!!!")
    assert read(b"HTTP/1.0 400 Bad Request\r\nConnection: close\r\n\r\nall of it")[::2] == (400, b"all of it")


def test_cpu_sets():
    assert parse_cpus(None) is None and parse_cpus("") is None
    assert parse_cpus("1") == {1} and parse_cpus("0,2-4") == {0, 2, 3, 4}


def test_a_closed_connection_is_reopened_for_the_next_request(tmp_path):
    """A 413 closes the connection (Connection: close): the client goes on with a new one."""
    server = ThreadServer(tmp_path, batcher=DynamicBatcher(Echo), max_payload_bytes=200)
    try:
        assert server.wait_loaded()
        texts = ["北京", "长" * 100, "上海"]  # the long one is over the payload limit
        result = run_load_test(server.url, texts, concurrency=2, requests=30, malformed=0,
                               expected=lambda text: [])
        assert result["status_counts"] == {"200": 20, "413": 10}
        assert result["good_not_200"] == 10  # the 413s: a good request must get 200
        assert result["transport_errors"] == result["wrong_answers"] == result["errors_5xx"] == 0
        assert result["client_cpu_seconds"] > 0
    finally:
        server.stop()


@needs_affinity
def test_the_load_generator_runs_on_the_cpus_it_is_given(tmp_path):
    server = ThreadServer(tmp_path, batcher=DynamicBatcher(Echo))
    try:
        assert server.wait_loaded()
        result = run_load_test(server.url, ["北京"], concurrency=2, requests=4, malformed=0, client_cpus={0})
        assert result["client_cpus"] == [0] and result["status_counts"] == {"200": 4}
        unpinned = run_load_test(server.url, ["北京"], concurrency=2, requests=4, malformed=0)
        assert unpinned["client_cpus"] == sorted(os.sched_getaffinity(0))
    finally:
        server.stop()


@needs_affinity
def test_the_server_process_starts_pinned(tmp_path):
    """Pinned before it runs anything: every thread it starts (TensorFlow's too) inherits it."""
    server = ServerProcess(tmp_path / "no-model", log_path=tmp_path / "serve.log", cpus={0})
    try:
        assert os.sched_getaffinity(server.process.pid) == {0}
        first = server.cpu_seconds()
        deadline = time.monotonic() + 60
        while server.cpu_seconds() == first and time.monotonic() < deadline:
            time.sleep(0.1)  # starting Python costs CPU time, so the count moves
        assert server.cpu_seconds() > first
    finally:
        server.stop()
