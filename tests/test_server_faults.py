"""Faults injected into a running `albert-ner serve`: a worker killed with SIGKILL under load, and
SIGTERM while slow requests are in flight (one worker and two).

The SIGTERM test extends tests/test_server_process.py::test_sigterm_finishes_in_flight_requests_then_exits_0,
which sends SIGTERM one second after starting its requests: here the server is first shown to
have read every request (so each is in flight, not waiting in the kernel), the answers are shown
to arrive after the signal, new connections must be refused while the drain is still going on,
and the same holds with two workers (where the supervising parent holds a copy of the socket).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import psutil
import pytest
from serving_helpers import lines_of, request

from albert_ner.serving.loadtest import ServerProcess, get, run_load_test
from albert_ner.serving.settings import ENV_SETTINGS

TEXTS = ["任文博出生于拉萨，财政部发言人曾芳表示。", "国务院总理李鹏今天在北京会见了日本外务大臣。", "新华社北京电"]


# ---------------------------------------------------------------- helpers
def worker_pids(server: ServerProcess) -> list[int]:
    """The uvicorn worker processes under the server (not multiprocessing's resource tracker)."""
    children = psutil.Process(server.process.pid).children()
    return sorted(c.pid for c in children if "spawn_main" in " ".join(c.cmdline()))


def n_workers(server: ServerProcess, n: int) -> list[int] | None:
    """The worker pids once there are exactly `n` of them, else None (for `wait_for`)."""
    pids = worker_pids(server)
    return pids if len(pids) == n else None


def client_ports(pid: int, server_port: int) -> set[int]:
    """Client-side ports of the connections the process `pid` has accepted on `server_port`."""
    return {c.raddr.port for c in psutil.Process(pid).net_connections("tcp")
            if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == server_port}


def log_lines(log: Path, pid: int) -> list[str]:
    """The lines process `pid` wrote to the server log, in order."""
    return [line for line in log.read_text(encoding="utf-8").splitlines()
            if line.startswith(f"[albert-ner serve {pid}]")]


def answered(log: Path) -> int:
    """Requests answered 200 so far (every worker logs one line per request)."""
    return len(re.findall(r'"POST /invocations" 200', log.read_text(encoding="utf-8")))


def wait_for(condition, timeout: float, what: str, every: float = 0.1):
    """Polls `condition()` until it returns something true; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def ping_status(url: str) -> tuple[int | None, str]:
    try:
        status, body = get(url + "/ping", timeout=5)
        return status, body.decode("utf-8", "replace")
    except OSError as err:
        return None, repr(err)


# ---------------------------------------------------------------- a worker killed under load
@pytest.mark.slow  # three worker processes load TensorFlow and the model
def test_a_worker_killed_under_load_is_replaced_and_ping_waits_for_its_model(trained_model, tmp_path):
    log = tmp_path / "serve.log"
    with ServerProcess(trained_model, "--workers", "2", log_path=log) as server:
        server.wait_ready()
        original = wait_for(lambda: n_workers(server, 2), 30, "two workers")
        ready_dir = Path(json.loads(psutil.Process(original[0]).environ()[ENV_SETTINGS])["ready_dir"])

        # A bounded closed loop: 8 keep-alive clients, 2,000 requests, and no resending, so
        # every request that meets the dead worker is counted.
        box: dict = {}
        load = threading.Thread(target=lambda: box.update(result=run_load_test(
            server.url, TEXTS, concurrency=8, requests=2000, malformed=0, retry_stale=False, timeout=60)))
        load.start()
        wait_for(lambda: answered(log) >= 200, 120, "the load to be under way")
        # The victim is the worker holding more of the clients' connections (at least one).
        victim = max(original, key=lambda pid: len(client_ports(pid, server.port)))
        survivor = next(pid for pid in original if pid != victim)
        victim_ports = client_ports(victim, server.port)
        assert victim_ports
        os.kill(victim, signal.SIGKILL)
        answered_at_kill = answered(log)
        assert load.is_alive()  # killed mid-load

        # /ping turns 503 once the supervisor has replaced the worker and dropped its file...
        first_503 = wait_for(lambda: (p := ping_status(server.url))[0] == 503 and p[1], 10, "/ping to say 503")
        assert "1 of 2 workers have loaded the model" in first_503
        replacement = wait_for(lambda: next((p for p in worker_pids(server) if p not in original), None),
                               30, "the replacement worker")
        # ... and stays 503 until the replacement has its model; the survivor answers meanwhile.
        bursts_while_loading = 0
        deadline = time.monotonic() + 180
        while (status := ping_status(server.url))[0] != 200:
            assert status[0] == 503 and "1 of 2 workers" in status[1], status
            assert time.monotonic() < deadline, "the replacement never became ready"
            burst = run_load_test(server.url, TEXTS, concurrency=4, requests=16, malformed=0, retry_stale=False)
            assert burst["status_counts"] == {"200": 16} and burst["transport_errors"] == 0, burst
            bursts_while_loading += 1
        assert bursts_while_loading >= 1
        assert sorted(os.listdir(ready_dir)) == sorted([f"ready-{survivor}", f"ready-{replacement}"])
        assert sorted(worker_pids(server)) == sorted([survivor, replacement])
        load.join(300)
        result = box["result"]

        # The replacement takes requests once loaded (new connections reach both workers).
        for _ in range(10):
            if any('"POST /invocations" 200' in line for line in log_lines(log, replacement)):
                break
            run_load_test(server.url, TEXTS, concurrency=8, requests=32, malformed=0)
        assert server.stop() == 0

    # What the clients saw: each connection the victim held failed exactly once — the request
    # in flight on it (or the next one written to it) got no answer: the kernel closed the
    # dead process's sockets, so the client read end-of-stream before any byte (EmptyReply;
    # a ConnectionResetError when unread bytes were still in the victim's buffer). Nothing
    # else failed: no 5xx, no 503 from a worker still loading, every answer for its text.
    assert result["transport_errors"] == len(victim_ports), result
    assert sorted(result["transport_error_ports"]) == sorted(victim_ports)
    assert set(result["transport_errors_by_kind"]) <= {"EmptyReply", "ConnectionResetError"}, result
    assert result["status_counts"] == {"200": 2000 - len(victim_ports)}
    assert result["errors_5xx"] == result["good_not_200"] == result["wrong_answers"] == 0
    assert answered(log) > answered_at_kill  # the survivor went on answering
    print(f"\nkilled worker {victim} holding {len(victim_ports)} of 8 connections: client saw "
          f"{result['transport_errors_by_kind']}; {result['status_counts']} of 2000; "
          f"{bursts_while_loading} bursts of 16 answered 200 while the replacement loaded")

    text = log.read_text(encoding="utf-8")
    assert f"worker {victim} ended (killed by SIGKILL); started worker {replacement} in its place" in text
    assert f"dropped the readiness record of worker {victim}" in text
    # The replacement accepted no request before its model was in.
    lines = log_lines(log, replacement)
    loaded = next(i for i, line in enumerate(lines) if "loaded and warmed up" in line)
    served = [i for i, line in enumerate(lines) if '"POST /invocations"' in line]
    assert served and min(served) > loaded
    assert "Traceback" not in text


# ---------------------------------------------------------------- SIGTERM drains
def serving_processes(server: ServerProcess, workers: int) -> list[psutil.Process]:
    """The processes that read requests: the server itself, or its workers."""
    if workers == 1:
        return [psutil.Process(server.process.pid)]
    pids = wait_for(lambda: n_workers(server, workers), 30, "the workers")
    return [psutil.Process(pid) for pid in pids]


def bytes_read(processes: list[psutil.Process]) -> int:
    """Bytes the processes have read with read/recv calls (sockets included; Linux's rchar)."""
    return sum(p.io_counters().read_chars for p in processes)


def connection_refused(port: int) -> bool:
    """True when a new TCP connection to 127.0.0.1:port is refused; an accepted probe is closed."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_drains_in_flight_requests_and_refuses_new_connections(trained_model, tmp_path, workers):
    log = tmp_path / "serve.log"
    server = ServerProcess(trained_model, "--workers", str(workers), log_path=log)
    try:
        server.wait_ready()
        readers = serving_processes(server, workers)
        before = bytes_read(readers)
        # Six requests of 600 sentences: each is over the batch budget, so runs alone, and
        # together they keep the model(s) busy for seconds after the signal.
        bodies = [("\n".join(f"{i}-{j}，李鹏在北京会见了日本外务大臣。" * 3 for j in range(600))).encode()
                  for i in range(6)]
        answers: list = [None] * len(bodies)
        finished: list = [None] * len(bodies)

        def send(i):
            answers[i] = request(server.url + "/invocations", bodies[i], "text/plain")
            finished[i] = time.monotonic()

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
        for thread in threads:
            thread.start()
        # In flight = the server has read the request (one still in the kernel's buffer would
        # be dropped with the idle connections): wait until it has read at least all bodies.
        wait_for(lambda: bytes_read(readers) - before >= sum(map(len, bodies)), 60, "the server to read the requests")
        assert not any(finished)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        wait_for(lambda: connection_refused(server.port), 10, "new connections to be refused", every=0.02)
        refused = time.monotonic()
        # Refused while the drain still runs: the server is up and answers are still owed.
        assert server.process.poll() is None
        assert any(thread.is_alive() for thread in threads)
        for thread in threads:
            thread.join(300)
        assert server.process.wait(300) == 0
    finally:
        server.stop()
    for body, (status, _, out), done in zip(bodies, answers, finished):
        assert status == 200
        assert [r["text"] for r in lines_of(out)] == body.decode().split("\n")
        assert done > signalled  # every one of them was answered after the signal
    print(f"\n{workers} worker(s): new connections refused {refused - signalled:.2f}s after SIGTERM, "
          f"the last in-flight answer {max(finished) - signalled:.2f}s after it")
    text = log.read_text(encoding="utf-8")
    assert "SIGTERM: no new connections" in text
    assert "Traceback" not in text and text.rstrip().endswith("stopped")
