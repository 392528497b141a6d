"""Load against a running server: concurrent clients, malformed requests mixed in, checked answers.

Used by `benchmarks/load_test.py`, the serving tests and notebook 06. Standard library only
(threads and `http.client`, one keep-alive connection per client), so it runs wherever the
package does.

Example:
  with ServerProcess("runs/msra", "--no-batching") as server:
      server.wait_ready()
      result = run_load_test(server.url, texts, concurrency=16, requests=1000, malformed=100)
  print(result["requests_per_s"], result["latency_ms"]["p99"])
"""

from __future__ import annotations

import http.client
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

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
    """

    def __init__(self, model_dir, *args: str, env: dict | None = None, log_path=None,
                 host: str = "127.0.0.1"):
        self.port = free_port(host)
        self.url = f"http://{host}:{self.port}"
        command = [sys.executable, "-m", "albert_ner.cli", "serve", "--model-dir", str(model_dir),
                   "--host", host, "--port", str(self.port), *args]
        self._log = open(log_path, "w", encoding="utf-8") if log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(command, env=dict(os.environ, **(env or {})),
                                        stdout=subprocess.DEVNULL, stderr=self._log)

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Polls /ping until 200.

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


def same_entities(got: list[dict], want: list[dict], score_tolerance: float) -> bool:
    """Equal spans and types; scores (when present) within `score_tolerance`.

    Scores may differ in the last float bits: the server merges requests into other batch
    shapes than an offline call, and reductions then add in another order.
    """
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):
        if {k: v for k, v in g.items() if k != "score"} != {k: v for k, v in w.items() if k != "score"}:
            return False
        if ("score" in g or "score" in w) and abs(g.get("score", math.inf) - w.get("score", -math.inf)) > score_tolerance:
            return False
    return True


class _Client:
    """One keep-alive connection; reconnects once when the server closed it in between."""

    def __init__(self, host: str, port: int, timeout: float):
        self.host, self.port, self.timeout = host, port, timeout
        self.conn = http.client.HTTPConnection(host, port, timeout=timeout)

    def post(self, body: bytes, content_type: str) -> tuple[int, bytes]:
        headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        for attempt in (1, 2):
            try:
                self.conn.request("POST", "/invocations", body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                if response.will_close:
                    self.conn.close()
                return response.status, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def run_load_test(
    url: str,
    texts: Sequence[str],
    concurrency: int = 16,
    requests: int = 1000,
    malformed: int = 100,
    expected: Callable[[str], list[dict]] | dict | None = None,
    seed: int = 0,
    timeout: float = 300.0,
    score_tolerance: float = 1e-4,
) -> dict:
    """Sends `requests` one-text requests and `malformed` bad ones from `concurrency` clients.

    Every good request is {"text": t} (application/json) with t taken in turn from `texts`;
    the bad ones (the kinds in MALFORMED, in turn) sit at random positions among them. A bad
    request must get a 4xx; a good one a 200 whose entities equal `expected(t)` when given.

    Args:
        url: the server, e.g. "http://127.0.0.1:8080".
        texts: the texts to send (cycled when fewer than `requests`).
        concurrency: client threads, each with its own connection.
        requests: good requests; `malformed`: bad requests mixed in.
        expected: text → the entity dicts it must get (a dict or a function), or None.
        seed: where the bad requests go.
        timeout: seconds per request.

    Returns:
        A dict: requests, malformed, concurrency, seconds, requests_per_s and chars_per_s
        (good requests only), latency_ms {p50, p95, p99, mean, max} of good requests,
        status_counts, errors_5xx, malformed_not_4xx, transport_errors, wrong_answers and the
        first few wrong answers in wrong_examples.
    """
    if not texts:
        raise ValueError("run_load_test needs at least one text")
    lookup = expected.get if isinstance(expected, dict) else expected
    parts = urllib.parse.urlsplit(url)
    jobs: list[tuple[str, str | None, bytes, str]] = [
        ("good", texts[i % len(texts)], json.dumps({"text": texts[i % len(texts)]}, ensure_ascii=False).encode(), "application/json")
        for i in range(requests)
    ]
    rng = random.Random(seed)
    for i in range(malformed):
        kind, body, content_type = MALFORMED[i % len(MALFORMED)]
        jobs.insert(rng.randrange(len(jobs) + 1), (kind, None, body, content_type))

    lock = threading.Lock()
    next_job = iter(jobs)
    latencies: list[float] = []
    statuses: Counter = Counter()
    problems = Counter()
    wrong_examples: list[dict] = []
    chars = 0

    def worker():
        nonlocal chars
        client = _Client(parts.hostname, parts.port, timeout)
        try:
            while True:
                with lock:
                    job = next(next_job, None)
                if job is None:
                    return
                kind, text, body, content_type = job
                started = time.perf_counter()
                try:
                    status, data = client.post(body, content_type)
                except OSError as err:
                    with lock:
                        problems["transport_errors"] += 1
                        if len(wrong_examples) < 5:
                            wrong_examples.append({"kind": kind, "error": repr(err)})
                    continue
                elapsed = time.perf_counter() - started
                verdict = _check(kind, text, status, data, lookup, score_tolerance)
                with lock:
                    statuses[str(status)] += 1
                    if kind == "good" and status == 200:
                        latencies.append(elapsed)
                        chars += len(text)
                    if verdict:
                        problems[verdict] += 1
                        if len(wrong_examples) < 5:
                            wrong_examples.append({"kind": kind, "text": text, "status": status,
                                                   "problem": verdict, "answer": data[:300].decode("utf-8", "replace")})
        finally:
            client.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, name=f"client-{i}") for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
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
        "errors_5xx": sum(n for s, n in statuses.items() if s.startswith("5")),
        "malformed_not_4xx": problems["malformed_not_4xx"],
        "good_not_200": problems["good_not_200"],
        "wrong_answers": problems["wrong_answer"],
        "transport_errors": problems["transport_errors"],
        "wrong_examples": wrong_examples,
    }


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
