"""Load against a running server: concurrent clients, malformed requests mixed in, checked answers.

Used by `benchmarks/load_test.py`, `benchmarks/soak.py`, the serving tests and notebook 06.
Asyncio with one keep-alive HTTP/1.1 connection per client, in a process of its own; h11 (which
uvicorn depends on, so it is there wherever the server is) reads and writes the HTTP. On Linux the server and the load generator can be pinned to
separate CPUs (`ServerProcess(..., cpus=...)`, `run_load_test(..., client_cpus=...)`), so they
do not take turns on the same core.

Example:
  with ServerProcess("runs/msra", "--no-batching", cpus={1}) as server:
      server.wait_ready()
      result = run_load_test(server.url, texts, concurrency=16, requests=1000, malformed=100,
                             client_cpus={0})
  print(result["requests_per_s"], result["latency_ms"]["p99"])
"""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import os
import pickle
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import h11

from albert_ner.data.example import SCORE_TOLERANCE, entities_difference

# Requests that must be refused with a 4xx: (what is wrong, body, Content-Type).
MALFORMED = [
    ("malformed JSON", b'{"text": "\xe5\x8c\x97\xe4\xba\xac', "application/json"),
    ("wrong content type", "<text>北京</text>".encode("utf-8"), "application/xml"),
    ("missing text", json.dumps({"txt": "北京"}).encode(), "application/json"),
    ("non-string item", json.dumps({"texts": ["北京", 3]}).encode(), "application/json"),
    ("invalid UTF-8", b'{"text": "\xff\xfe"}', "application/json"),
    ("empty body", b"", "application/json"),
]


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`albert-ner serve` in a child process on a free loopback port.

    Args:
        model_dir: the model directory to serve.
        *args: more `serve` options, e.g. "--no-batching".
        env: extra environment variables for the child.
        log_path: file for the child's stderr (default: discarded).
        cpus: CPUs the server is pinned to (Linux), before it starts any thread: TensorFlow
            sizes its thread pools to them.
    """

    def __init__(self, model_dir, *args: str, env: dict | None = None, log_path=None,
                 host: str = "127.0.0.1", cpus: set[int] | None = None):
        self.port = free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.log_path = Path(log_path) if log_path else None
        command = [sys.executable, "-m", "albert_ner.cli", "serve", "--model-dir", str(model_dir),
                   "--host", host, "--port", str(self.port), *args]
        self._log = open(log_path, "w", encoding="utf-8") if log_path else subprocess.DEVNULL
        self.cpus = set(cpus) if cpus else None
        pin = (lambda: os.sched_setaffinity(0, self.cpus)) if self.cpus else None
        self.process = subprocess.Popen(command, env=dict(os.environ, **(env or {})),
                                        stdout=subprocess.DEVNULL, stderr=self._log, preexec_fn=pin)

    def cpu_seconds(self) -> float | None:
        """CPU time the server process has used so far (all its threads); None off Linux."""
        try:
            with open(f"/proc/{self.process.pid}/stat", encoding="ascii") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Polls /ping until 200 (with several workers the server answers 200 only once every
        worker has its model: `serving.readiness`).

        Raises:
            RuntimeError: the child exited, or /ping did not answer 200 within `timeout`.
        """
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with status {self.process.returncode} before it was ready")
            try:
                status, body = get(self.url + "/ping")
                if status == 200:
                    return
                last = f"{status} {body[:200]!r}"
            except OSError as err:
                last = str(err)
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout:.0f}s (last /ping: {last})")

    def stop(self, timeout: float = 120.0) -> int:
        """SIGTERM, then the exit status (the server drains in-flight requests first)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            if self._log is not subprocess.DEVNULL:
                self._log.close()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """(status, body) of a GET on a new connection."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/")
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by the nearest-rank method; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def same_entities(got: list[dict], want: list[dict], score_tolerance: float = SCORE_TOLERANCE) -> bool:
    """Equal spans and types; scores within `score_tolerance` (`data.example.entities_difference`:
    the server merges requests into other batch shapes than an offline call)."""
    return entities_difference(got, want, score_tolerance) is None


def parse_cpus(spec: str | None) -> set[int] | None:
    """"0", "1,3" or "0-1" → a CPU set for `os.sched_setaffinity`; None or "" → None (no pinning)."""
    if not spec:
        return None
    cpus: set[int] = set()
    for part in spec.split(","):
        first, _, last = part.strip().partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


# ---------------------------------------------------------------- the load generator
# One process, one thread, asyncio: each client is a coroutine with its own keep-alive
# connection, and the HTTP/1.1 is h11's (sans-IO: it parses and frames, asyncio streams move
# the bytes). h11 is pure Python: the generator needs 0.13-0.14 ms of CPU per request where
# the hand-written parser it replaced needed 0.045-0.05 (4,000 requests to a stand-in model
# from 16 clients, the two interleaved, busy machine), and h11 alone takes about 0.05 ms per
# request-response; that is still below the 0.20-0.31 ms of 16 threads with http.client.
# Answers are only stored while the clock runs and checked afterwards, so checking competes
# with nothing.

READ_SIZE = 65536
_END = h11.EndOfMessage()  # h11 events are immutable: built once, sent for every request


class EmptyReply(ConnectionError):
    """The server closed the connection before a single byte of the answer (what curl calls
    "Empty reply from server"): a keep-alive connection it had closed in between, or a
    server process that died while the request was in flight."""


def prepare_request(host: str, port: int, body: bytes, content_type: str,
                    target: str = "/invocations") -> tuple[h11.Request, h11.Data]:
    """A POST as h11 events (head, body): built (and its headers validated) once, sent as
    often as needed."""
    head = h11.Request(method="POST", target=target, headers=[
        ("Host", f"{host}:{port}"), ("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return head, h11.Data(data=body)


class Connection:
    """One keep-alive HTTP/1.1 client connection: asyncio streams for the bytes, h11 for the rest.

    Opens on the first `exchange` and again after the server ended it (Connection: close, an
    HTTP/1.0 answer) or an error closed it; `reused` says whether the next request goes on an
    open connection that has already carried an answer (one the server may have closed
    meanwhile, e.g. after its keep-alive timeout).

    Example:
        conn = Connection("127.0.0.1", 8080)
        status, headers, body = await conn.exchange(prepare_request("127.0.0.1", 8080, b"{}", JSON))
        conn.close()
    """

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._h11: h11.Connection | None = None
        self.reused = False
        self.client_port: int | None = None  # the local port of the last connection opened

    async def exchange(self, request: tuple[h11.Request, h11.Data]) -> tuple[int, dict[str, str], bytes]:
        """Sends one request, returns (status, lower-case headers, body) of its answer.

        Raises:
            EmptyReply, ConnectionError (reset, refused), OSError, h11.RemoteProtocolError
            (a malformed or cut-off answer). The connection is closed after any of them.
        """
        try:
            if self._streams is None:
                self._streams = await asyncio.open_connection(self.host, self.port)
                self._h11, self.reused = h11.Connection(h11.CLIENT), False
                self.client_port = self._streams[1].get_extra_info("sockname")[1]
            reader, writer = self._streams
            head, body = request
            writer.write(self._h11.send(head) + self._h11.send(body) + self._h11.send(_END))
            answer = await _read_response(reader, self._h11)
        except BaseException:  # a timeout's cancellation too: the connection's state is unknown
            self.close()
            raise
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()  # keep-alive: the next request goes on this connection
            self.reused = True
        else:
            self.close()  # the server said Connection: close (or spoke HTTP/1.0)
        return answer

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = self._h11 = None
        self.reused = False


async def _read_response(reader: asyncio.StreamReader, conn: h11.Connection | None = None
                         ) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-case headers, body) of one HTTP/1.1 response, parsed by h11.

    Args:
        reader: the connection's incoming bytes.
        conn: its h11 state after sending the request; None parses a lone response.

    Raises:
        EmptyReply: the connection ended before any byte of the answer.
        h11.RemoteProtocolError: the answer is malformed or ends early.
    """
    conn = conn if conn is not None else h11.Connection(h11.CLIENT)
    response, chunks, received = None, [], 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(READ_SIZE)
            if not data and not received:
                raise EmptyReply("the server closed the connection without answering")
            received += len(data)
            conn.receive_data(data)  # b"" tells h11 the stream ended
        elif isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            chunks.append(event.data)
        elif isinstance(event, h11.EndOfMessage):
            break
        # an InformationalResponse (100 Continue) needs nothing: the final answer follows
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in response.headers}
    return response.status_code, headers, b"".join(chunks)


async def _send_all(host: str, port: int, requests: list[tuple[bytes, str]], concurrency: int,
                    timeout: float, retry_stale: bool = True) -> list:
    """Per request: (status, headers, body, seconds), or (None, error text, error type name,
    client port) after a transport error."""
    prepared = [prepare_request(host, port, body, content_type) for body, content_type in requests]
    outcomes: list = [None] * len(prepared)
    pending = iter(range(len(prepared)))  # shared by the clients: each takes the next request

    async def client():
        conn = Connection(host, port)
        for i in pending:
            for attempt in (1, 2):
                started = time.perf_counter()
                try:
                    async with asyncio.timeout(timeout):
                        status, headers, body = await conn.exchange(prepared[i])
                    outcomes[i] = (status, headers, body, time.perf_counter() - started)
                    break
                except (OSError, asyncio.TimeoutError, h11.ProtocolError) as err:
                    # A keep-alive connection the server closed in between fails before any
                    # answer (EmptyReply or a reset): that request is sent once more on a
                    # new connection, unless the caller wants to see every such failure.
                    stale = isinstance(err, ConnectionError)
                    if attempt == 2 or not stale or not retry_stale:
                        outcomes[i] = (None, repr(err), type(err).__name__, conn.client_port)
                        break
        conn.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return outcomes


def generate_load(host: str, port: int, requests: list[tuple[bytes, str]], concurrency: int, timeout: float,
                  cpus: set[int] | None = None, retry_stale: bool = True) -> dict:
    """Sends `requests` ((body, Content-Type) POSTs to /invocations) from `concurrency`
    keep-alive connections.

    Runs in the load-generator process (`run_load_test` starts it); `cpus` pins it first.
    `retry_stale` False records a request that met a closed or reset connection as failed
    instead of sending it once more.

    Returns:
        {"outcomes": per request (status, headers, body, seconds) or (None, error, error type,
         client port), "seconds": wall time, "cpu_seconds": this process's CPU time meanwhile,
         "cpus": the CPUs it ran on (Linux; None elsewhere)}.
    """
    if cpus:
        os.sched_setaffinity(0, cpus)
    cpu, started = time.process_time(), time.perf_counter()
    outcomes = asyncio.run(_send_all(host, port, requests, concurrency, timeout, retry_stale))
    return {"outcomes": outcomes, "seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu,
            "cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}


def _generate_in_child(arguments: dict) -> dict:
    """`generate_load(**arguments)` in a new interpreter (`python -m` this module).

    A fresh process rather than multiprocessing: no fork of a caller that may hold
    TensorFlow's threads, and no re-import of the caller's main script.
    """
    package_root = str(Path(__file__).resolve().parents[2])  # so `-m` finds this package
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    child = subprocess.run([sys.executable, "-m", "albert_ner.serving.loadtest"], input=pickle.dumps(arguments),
                           capture_output=True, env=env, check=False)
    if child.returncode != 0:
        raise RuntimeError(f"the load generator failed (exit {child.returncode}):\n"
                           f"{child.stderr.decode('utf-8', 'replace')[-2000:]}")
    return pickle.loads(child.stdout)


def run_load_test(
    url: str,
    texts: Sequence[str],
    concurrency: int = 16,
    requests: int = 1000,
    malformed: int = 100,
    expected: Callable[[str], list[dict]] | dict | None = None,
    seed: int = 0,
    timeout: float = 300.0,
    score_tolerance: float = SCORE_TOLERANCE,
    client_cpus: set[int] | None = None,
    retry_stale: bool = True,
) -> dict:
    """Sends `requests` one-text requests and `malformed` bad ones from `concurrency` clients.

    Every good request is {"text": t} (application/json) with t taken in turn from `texts`;
    the bad ones (the kinds in MALFORMED, in turn) sit at random positions among them. A bad
    request must get a 4xx; a good one a 200 whose entities equal `expected(t)` when given.
    A 503 with Retry-After (the server's queue limit) is counted as `rejected_busy`, apart
    from the other 5xx. The clients run in a separate process (`generate_load`), so they
    never share this process's interpreter, and optionally on their own CPUs.

    Args:
        url: the server, e.g. "http://127.0.0.1:8080".
        texts: the texts to send (cycled when fewer than `requests`).
        concurrency: clients, each with its own keep-alive connection.
        requests: good requests; `malformed`: bad requests mixed in.
        expected: text → the entity dicts it must get (a dict or a function), or None.
        seed: where the bad requests go.
        timeout: seconds per request.
        score_tolerance: largest accepted difference of an entity's score.
        client_cpus: CPUs the load generator is pinned to (None: wherever the OS puts it).
        retry_stale: send a request once more on a new connection when it met a closed or
            reset one (a keep-alive connection the server closed in between); False counts
            every such request as a transport error (to see what a dying worker costs).

    Returns:
        A dict: requests, malformed, concurrency, seconds, requests_per_s and chars_per_s
        (good requests answered 200 only), latency_ms {p50, p95, p99, mean, max} of those,
        status_counts, errors_5xx (other than rejected_busy), rejected_busy,
        malformed_not_4xx, good_not_200, transport_errors (with transport_errors_by_kind,
        e.g. {"EmptyReply": 2, "ConnectionResetError": 1}, and transport_error_ports, the
        client-side port of each), wrong_answers, the first few problems in wrong_examples,
        client_cpu_seconds and client_cpus (the load generator's CPU time and the CPUs it
        was allowed to run on).
    """
    if not texts:
        raise ValueError("run_load_test needs at least one text")
    lookup = expected.get if isinstance(expected, dict) else expected
    parts = urllib.parse.urlsplit(url)
    jobs = load_test_requests(texts, requests, malformed, seed)
    run = _generate_in_child(dict(host=parts.hostname, port=parts.port, retry_stale=retry_stale,
                                  requests=[(body, ctype) for _, _, body, ctype in jobs],
                                  concurrency=concurrency, timeout=timeout, cpus=client_cpus))

    latencies: list[float] = []
    statuses: Counter = Counter()
    problems: Counter = Counter()
    wrong_examples: list[dict] = []
    transport_kinds: Counter = Counter()  # exception name -> count
    transport_ports: list[int | None] = []  # the client-side port of each failed request
    chars = 0
    for (kind, text, _, _), outcome in zip(jobs, run["outcomes"]):
        if outcome[0] is None:
            problems["transport_errors"] += 1
            _, error, error_type, client_port = outcome
            transport_kinds[error_type] += 1
            transport_ports.append(client_port)
            verdict, example = "transport_errors", {"kind": kind, "error": error, "client_port": client_port}
        else:
            status, headers, data, seconds = outcome
            statuses[str(status)] += 1
            if status == 503 and "retry-after" in headers:
                problems["rejected_busy"] += 1
                continue
            if kind == "good" and status == 200:
                latencies.append(seconds)
                chars += len(text)
            verdict = _check(kind, text, status, data, lookup, score_tolerance)
            if not verdict:
                continue
            problems[verdict] += 1
            example = {"kind": kind, "text": text, "status": status, "problem": verdict,
                       "answer": data[:300].decode("utf-8", "replace")}
        if len(wrong_examples) < 5:
            wrong_examples.append(example)

    seconds = run["seconds"]
    ms = [1000 * x for x in latencies]
    return {
        "requests": requests,
        "malformed": malformed,
        "concurrency": concurrency,
        "seconds": round(seconds, 3),
        "requests_per_s": round(len(latencies) / seconds, 2),
        "chars_per_s": round(chars / seconds, 1),
        "latency_ms": {
            "p50": round(percentile(ms, 50), 2),
            "p95": round(percentile(ms, 95), 2),
            "p99": round(percentile(ms, 99), 2),
            "mean": round(sum(ms) / len(ms), 2) if ms else math.nan,
            "max": round(max(ms), 2) if ms else math.nan,
        },
        "status_counts": dict(sorted(statuses.items())),
        "errors_5xx": sum(n for s, n in statuses.items() if s.startswith("5")) - problems["rejected_busy"],
        "rejected_busy": problems["rejected_busy"],
        "malformed_not_4xx": problems["malformed_not_4xx"],
        "good_not_200": problems["good_not_200"],
        "wrong_answers": problems["wrong_answer"],
        "transport_errors": problems["transport_errors"],
        "transport_errors_by_kind": dict(sorted(transport_kinds.items())),
        "transport_error_ports": transport_ports,
        "wrong_examples": wrong_examples,
        "client_cpu_seconds": round(run["cpu_seconds"], 3),
        "client_cpus": run["cpus"],
    }


def load_test_requests(texts: Sequence[str], requests: int, malformed: int, seed: int = 0
                       ) -> list[tuple[str, str | None, bytes, str]]:
    """The requests `run_load_test` sends, in order: (kind, text, body, Content-Type).

    kind is "good" (body {"text": t}, t taken in turn from `texts`, which must not be empty)
    or a MALFORMED kind (text None), the bad ones at positions drawn with `seed`. Other load
    generators (benchmarks/wrk_crosscheck.py) send the same list.
    """
    jobs: list[tuple[str, str | None, bytes, str]] = [
        ("good", texts[i % len(texts)], json.dumps({"text": texts[i % len(texts)]}, ensure_ascii=False).encode(), "application/json")
        for i in range(requests)
    ]
    rng = random.Random(seed)
    for i in range(malformed):
        kind, body, content_type = MALFORMED[i % len(MALFORMED)]
        jobs.insert(rng.randrange(len(jobs) + 1), (kind, None, body, content_type))
    return jobs


def _check(kind, text, status, data, lookup, score_tolerance) -> str | None:
    """None if the answer is right, else what was wrong with it."""
    if kind != "good":
        if not 400 <= status < 500:
            return "malformed_not_4xx"
        try:
            return None if "error" in json.loads(data) else "malformed_not_4xx"
        except ValueError:
            return "malformed_not_4xx"  # an error must be JSON
    if status != 200:
        return "good_not_200"
    try:
        (record,) = json.loads(data)["predictions"]
    except (ValueError, KeyError, TypeError):
        return "wrong_answer"
    if record.get("text") != text:
        return "wrong_answer"
    if lookup is not None and not same_entities(record["entities"], lookup(text), score_tolerance):
        return "wrong_answer"
    return None


def plot_load_tests(results: dict[str, dict], path) -> Path:
    """A two-panel PNG: throughput (requests/s) and latency percentiles, one group per run.

    Args:
        results: label (e.g. "batching on") → a `run_load_test` result.
        path: the PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(results)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.bar(labels, [results[k]["requests_per_s"] for k in labels], color="tab:blue")
    left.set_ylabel("requests / s")
    left.set_title("throughput")
    width = 0.8 / 3
    for i, q in enumerate(("p50", "p95", "p99")):
        xs = [j + (i - 1) * width for j in range(len(labels))]
        right.bar(xs, [results[k]["latency_ms"][q] for k in labels], width, label=q)
    right.set_xticks(range(len(labels)), labels)
    right.set_ylabel("latency (ms)")
    right.set_title("latency of successful requests")
    right.legend()
    concurrency = {r["concurrency"] for r in results.values()}
    fig.suptitle(f"albert-ner serve, {', '.join(map(str, sorted(concurrency)))} concurrent clients")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


if __name__ == "__main__":
    # The load-generator process of `run_load_test`: arguments in, outcomes out, as pickles.
    sys.stdout.buffer.write(pickle.dumps(generate_load(**pickle.loads(sys.stdin.buffer.read()))))
