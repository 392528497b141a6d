"""The load generator's HTTP client (`serving.loadtest.Connection`, h11 over asyncio streams)
against a scripted raw-socket server that misbehaves on purpose: a connection closed without an
answer, an answer cut short, keep-alive reuse, Connection: close, chunked bodies.
"""

from __future__ import annotations

import asyncio
import threading

import h11
import pytest

from albert_ner.serving.loadtest import EmptyReply, generate_load

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class ScriptedServer:
    """A TCP server on 127.0.0.1 in a thread of its own: per accepted connection, the next
    script from `scripts` (a list of answers, one per request; None = close without answering)."""

    def __init__(self, scripts: list[list[bytes | None]]):
        self.scripts = list(scripts)
        self.connections = 0
        self.requests = 0
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        assert started.wait(10)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        started.set()
        self.loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        script = self.scripts.pop(0) if self.scripts else [OK] * 100
        self.connections += 1
        try:
            for answer in script:
                if not await _read_request(reader):
                    return
                self.requests += 1
                if answer is None:
                    return  # close without a byte of answer
                writer.write(answer)
                await writer.drain()
        finally:
            writer.close()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


async def _read_request(reader: asyncio.StreamReader) -> bool:
    """Reads one request (head and Content-Length body); False at end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return False
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    await reader.readexactly(length)
    return True


@pytest.fixture
def scripted():
    servers = []

    def start(*scripts):
        servers.append(ScriptedServer(list(scripts)))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def send(server: ScriptedServer, n: int, retry_stale: bool = True, concurrency: int = 1) -> list:
    requests = [(b'{"text": "\xe5\x8c\x97"}', "application/json")] * n
    return generate_load("127.0.0.1", server.port, requests, concurrency, timeout=10,
                         retry_stale=retry_stale)["outcomes"]


def test_keep_alive_carries_every_request_on_one_connection(scripted):
    server = scripted([OK] * 5)
    outcomes = send(server, 5)
    assert [o[:3] for o in outcomes] == [(200, {"content-length": "2"}, b"ok")] * 5
    assert server.connections == 1 and server.requests == 5


def test_connection_close_and_chunked_answers(scripted):
    closing = b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbig"
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n"
    server = scripted([closing], [chunked, OK])
    outcomes = send(server, 3)
    assert [(o[0], o[2]) for o in outcomes] == [(413, b"big"), (200, b"abcde"), (200, b"ok")]
    assert server.connections == 2  # the 413 ended its connection; the next one was new


def test_a_connection_closed_without_an_answer_is_an_empty_reply(scripted):
    server = scripted([OK, None])
    first, second = send(server, 2, retry_stale=False)
    assert first[0] == 200
    status, error, kind, client_port = second
    assert (status, kind) == (None, "EmptyReply") and "without answering" in error
    assert isinstance(client_port, int) and client_port > 0
    assert issubclass(EmptyReply, ConnectionError)  # what the resend logic keys on


def test_a_stale_connection_is_resent_once_by_default(scripted):
    # The server closes the kept-alive connection instead of answering the second request:
    # the client sends it again on a new connection, where it is answered.
    server = scripted([OK, None], [OK])
    assert [o[0] for o in send(server, 2)] == [200, 200]
    assert server.connections == 2 and server.requests == 3


def test_an_answer_cut_short_is_an_error_and_not_resent(scripted):
    server = scripted([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"])
    (outcome,) = send(server, 1)
    assert outcome[0] is None and outcome[2] == "RemoteProtocolError"
    assert server.connections == 1  # not a stale connection: the answer had begun
    assert issubclass(h11.RemoteProtocolError, h11.ProtocolError)
