"""Soak test of `albert-ner serve`: half of its capacity for half an hour, latency and memory watched.

Starts the server on 127.0.0.1 (one worker, dynamic batching, default settings) over a trained
model (`--model-dir`, or the model `benchmarks/load_test.py` trains by default), measures its
capacity with a short closed-loop burst (`serving.loadtest.run_load_test`: CONCURRENCY
keep-alive clients, no malformed requests), then sends one-sentence requests open-loop at a
constant FRACTION x capacity for MINUTES. Open loop: request n is due at start + n / rate
whether or not earlier ones were answered, and its latency counts from when it was due, so a
server that falls behind shows it instead of slowing the clients down with it.

Every WINDOW seconds it records the window's answered requests, p50/p99/max latency, errors,
requests in flight, the server's resident memory (RSS, its whole process tree, psutil) and CPU
use, and the machine's load average (other jobs sharing the cores). At the end: least-squares
slopes of p99 (ms/min) and RSS (MB/min) over the windows, start and end values, written to
OUT/soak.json (the windows also go to OUT/soak_windows.jsonl as they happen) and a plot to
OUT/soak.png.

  python benchmarks/soak.py --model-dir runs/msra                       # 30 minutes
  python benchmarks/soak.py --model-dir runs/msra --minutes 1 --window-seconds 10 --out /tmp/soak-trial
  python benchmarks/soak.py                                             # trains the load test's default model first
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import h11  # noqa: E402
import psutil  # noqa: E402

from albert_ner.serving.loadtest import (  # noqa: E402
    Connection,
    ServerProcess,
    percentile,
    prepare_request,
    run_load_test,
)
from albert_ner.serving.server import http_stack  # noqa: E402

HOST = "127.0.0.1"  # requests go to this machine only
MAX_CONNECTIONS = 512  # the open loop's connection cap: beyond it a due request is counted as dropped
# An idle connection is closed after this long, before uvicorn's keep-alive timeout (5 s) does
# it under our feet: a request would then meet a closed connection and have to be sent again.
IDLE_CLOSE_S = 4.0


# ---------------------------------------------------------------- measuring
class Window:
    """What happened between two samples: answers, latencies, errors."""

    def __init__(self):
        self.sent = 0
        self.resent = 0  # requests sent again after meeting a connection the server had closed
        self.latencies: list[float] = []  # seconds from due time to a 200
        self.errors: Counter = Counter()  # "503", "EmptyReply", "dropped (connection cap)", ...


def process_tree(pid: int) -> list[psutil.Process]:
    """The server and its children (uvicorn workers when there are several)."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


class ServerSampler:
    """RSS and CPU use of the server's process tree, between consecutive calls."""

    def __init__(self, pid: int):
        self.pid = pid
        self._cpu, self._when = self._cpu_seconds(), time.monotonic()

    def _cpu_seconds(self) -> float:
        total = 0.0
        for proc in process_tree(self.pid):
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass  # a worker that ended between listing and reading
        return total

    def sample(self) -> dict:
        rss = 0
        for proc in process_tree(self.pid):
            try:
                rss += proc.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        cpu, when = self._cpu_seconds(), time.monotonic()
        busy = (cpu - self._cpu) / (when - self._when)
        self._cpu, self._when = cpu, when
        return {"rss_mb": round(rss / 2**20, 1), "server_cpu_cores": round(busy, 2)}


def slope_per_minute(minutes: list[float], values: list[float]) -> float:
    """Least-squares slope of values against minutes (units per minute); NaN for < 2 points."""
    n = len(minutes)
    if n < 2:
        return float("nan")
    mean_t, mean_v = sum(minutes) / n, sum(values) / n
    spread = sum((t - mean_t) ** 2 for t in minutes)
    return sum((t - mean_t) * (v - mean_v) for t, v in zip(minutes, values)) / spread


# ---------------------------------------------------------------- the open loop
async def open_loop(port: int, bodies: list[bytes], rate: float, seconds: float, window_s: float,
                    timeout: float, on_window) -> dict:
    """Sends bodies (cycled) at `rate` per second for `seconds`.

    Every `window_s` seconds it calls `on_window(index, end second, Window, requests in
    flight, open connections)`; answers that arrive after the last full window go to one
    more call with index -1. Returns the totals.
    """
    requests = [prepare_request(HOST, port, body, "application/json") for body in bodies]
    loop = asyncio.get_running_loop()
    idle: deque[tuple[Connection, float]] = deque()  # (connection, idle since): oldest on the left
    opened = live = 0  # connections created in all / not closed for idling
    in_flight: set[asyncio.Task] = set()
    state = {"window": Window()}
    start = loop.time()

    async def exchange(conn: Connection, request) -> int:
        """The answer's status. A connection kept idle longer than the server's keep-alive
        timeout (uvicorn: 5 s) may have been closed by the server: a request that finds it so
        (no byte of answer) is sent once more on a new connection, as the load test does."""
        reused = conn.reused
        try:
            return (await conn.exchange(request))[0]
        except ConnectionError:
            if not reused:
                raise
            state["window"].resent += 1
            return (await conn.exchange(request))[0]

    async def one(request, due: float) -> None:
        nonlocal opened, live
        while idle and loop.time() - idle[0][1] > IDLE_CLOSE_S:
            idle.popleft()[0].close()
            live -= 1
        conn = idle.pop()[0] if idle else None  # the most recently used: keeps the pool small
        if conn is None:
            if live >= MAX_CONNECTIONS:
                state["window"].errors["dropped (connection cap)"] += 1
                return
            conn, opened, live = Connection(HOST, port), opened + 1, live + 1
        try:
            async with asyncio.timeout(timeout):
                status = await exchange(conn, request)
        except (OSError, asyncio.TimeoutError, h11.ProtocolError) as err:  # counted, not raised
            state["window"].errors[type(err).__name__] += 1
        else:
            if status == 200:
                state["window"].latencies.append(loop.time() - due)
            else:
                state["window"].errors[str(status)] += 1
        idle.append((conn, loop.time()))  # a failed one reopens on its next use

    async def ticker() -> None:
        for index in range(round(seconds / window_s)):
            end = start + (index + 1) * window_s
            await asyncio.sleep(max(0.0, end - loop.time()))
            window, state["window"] = state["window"], Window()
            on_window(index, end - start, window, len(in_flight), live)

    ticking = asyncio.create_task(ticker())
    sent = 0
    while (due := start + sent / rate) < start + seconds:
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # behind schedule: send at once, the rate is what counts
        task = asyncio.create_task(one(requests[sent % len(requests)], due))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        state["window"].sent += 1
        sent += 1
    # The last full window closes at start + seconds; answers still owed then (waited for up to
    # the request timeout) go to the tail record.
    await asyncio.sleep(max(0.0, start + seconds - loop.time()) + 0.05)
    if in_flight:
        await asyncio.wait(set(in_flight), timeout=timeout + 5)
    await ticking
    on_window(-1, loop.time() - start, state["window"], len(in_flight), live)
    for conn, _ in idle:
        conn.close()
    return {"sent": sent, "seconds": loop.time() - start, "connections_opened": opened}


# ---------------------------------------------------------------- the run
def machine() -> dict:
    """CPU model, cores and the vector-instruction flags that matter for TensorFlow."""
    model = next((line.split(":", 1)[1].strip() for line in
                  subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                  if line.startswith("Model name")), platform.processor())
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    return {"cpu": model, "cores": os.cpu_count(), "flags": [f for f in wanted if f in flags],
            "python": platform.python_version()}


def summarize(windows: list[dict]) -> dict:
    """Slopes and start/end values of p99 and RSS over the full windows."""
    full = [w for w in windows if w["index"] >= 0 and w["answered"]]
    minutes = [w["end_minute"] for w in full]
    p99 = [w["p99_ms"] for w in full]
    rss = [w["rss_mb"] for w in full]
    return {
        "windows": len(full),
        "p99_slope_ms_per_min": round(slope_per_minute(minutes, p99), 3),
        "rss_slope_mb_per_min": round(slope_per_minute(minutes, rss), 3),
        "p99_start_end_ms": [p99[0], p99[-1]] if full else None,
        "p50_start_end_ms": [full[0]["p50_ms"], full[-1]["p50_ms"]] if full else None,
        "rss_start_end_mb": [rss[0], rss[-1]] if full else None,
        "p99_median_ms": round(percentile(p99, 50), 1) if full else None,
        "errors": sum(sum(w["errors"].values()) for w in windows),
        "resent_stale": sum(w["resent_stale"] for w in windows),
        "answered": sum(w["answered"] for w in windows),
        "sent": sum(w["sent"] for w in windows),
    }


def plot(windows: list[dict], summary: dict, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full = [w for w in windows if w["index"] >= 0 and w["answered"]]
    t = [w["end_minute"] for w in full]
    fig, (top, bottom, load) = plt.subplots(3, 1, figsize=(9, 8), sharex=True,
                                         gridspec_kw={"height_ratios": [3, 3, 1.5]})
    top.plot(t, [w["p50_ms"] for w in full], "o-", label="p50")
    top.plot(t, [w["p99_ms"] for w in full], "o-", label=f"p99 (slope {summary['p99_slope_ms_per_min']:+.2f} ms/min)")
    top.set_ylabel("latency (ms)")
    top.legend()
    bottom.plot(t, [w["rss_mb"] for w in full], "o-", color="tab:green",
                label=f"server RSS (slope {summary['rss_slope_mb_per_min']:+.3f} MB/min)")
    bottom.set_ylabel("RSS (MB)")
    bottom.legend()
    # The cores are shared: the load average says when other jobs competed with the server.
    load.plot(t, [w["load_average_1m"] for w in full], "-", color="tab:gray")
    load.set_ylabel("load avg (1 min)")
    load.set_xlabel("minutes")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", help="model directory to serve (default: train load_test.py's default model)")
    parser.add_argument("--msra-test", default=str(REPO.parent / "shared" / "data" / "msra" / "test.txt"),
                        help="CoNLL file whose sentences are sent")
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the open-loop phase")
    parser.add_argument("--window-seconds", type=float, default=30.0, help="sampling period")
    parser.add_argument("--fraction", type=float, default=0.5, help="open-loop rate as a fraction of capacity")
    parser.add_argument("--capacity-requests", type=int, default=3000, help="requests in the closed-loop burst")
    parser.add_argument("--concurrency", type=int, default=16, help="clients of the closed-loop burst")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "soak"))
    args = parser.parse_args(argv)

    import load_test  # benchmarks/load_test.py: the same model and texts as the load test

    scratch = Path(tempfile.mkdtemp(prefix="albert-ner-soak-"))
    model_dir = Path(args.model_dir) if args.model_dir else load_test.train_model("chars", scratch, Path(args.msra_test).parent)
    texts, texts_source = load_test.load_texts(Path(args.msra_test), 1000)
    bodies = [json.dumps({"text": t}, ensure_ascii=False).encode() for t in texts]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stream = out / "soak_windows.jsonl"
    stream.write_text("")
    print(f"{len(texts)} texts from {texts_source}; model {model_dir}; HTTP stack {http_stack()}", file=sys.stderr)

    with ServerProcess(model_dir, log_path=scratch / "serve.log") as server:
        server.wait_ready()
        capacity = run_load_test(server.url, texts, concurrency=args.concurrency,
                                 requests=args.capacity_requests, malformed=0)
        rate = args.fraction * capacity["requests_per_s"]
        print(f"capacity {capacity['requests_per_s']:.1f} req/s (closed loop, {args.concurrency} clients, "
              f"p99 {capacity['latency_ms']['p99']} ms); open loop at {rate:.1f} req/s for {args.minutes:g} min",
              file=sys.stderr)
        sampler = ServerSampler(server.process.pid)
        windows: list[dict] = []

        def on_window(index, end_second, window: Window, in_flight: int, connections: int) -> None:
            ms = [1000 * x for x in window.latencies]
            record = {"index": index, "end_minute": round(end_second / 60, 3), "sent": window.sent,
                      "answered": len(ms), "p50_ms": round(percentile(ms, 50), 2) if ms else None,
                      "p99_ms": round(percentile(ms, 99), 2) if ms else None,
                      "max_ms": round(max(ms), 2) if ms else None, "errors": dict(window.errors),
                      "resent_stale": window.resent,
                      "in_flight": in_flight, "connections": connections, **sampler.sample(),
                      "load_average_1m": round(os.getloadavg()[0], 2)}
            windows.append(record)
            with stream.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
            print(f"{record['end_minute']:6.2f} min: {record['answered']} answered, p50 {record['p50_ms']} "
                  f"p99 {record['p99_ms']} ms, RSS {record['rss_mb']} MB, server {record['server_cpu_cores']} cores, "
                  f"load {record['load_average_1m']}, errors {record['errors']}, resent {record['resent_stale']}", file=sys.stderr)

        totals = asyncio.run(open_loop(server.port, bodies, rate, 60 * args.minutes, args.window_seconds,
                                       args.timeout, on_window))
        exit_code = server.stop()

    summary = summarize(windows)
    report = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "http_stack": http_stack(),
        "model_dir": str(model_dir),
        "model_config": json.loads((model_dir / "model_config.json").read_text()) if (model_dir / "model_config.json").exists() else None,
        "texts_source": texts_source,
        "settings": {"workers": 1, "batching": True, "fraction": args.fraction, "minutes": args.minutes,
                     "window_seconds": args.window_seconds, "timeout_s": args.timeout},
        "capacity": {k: capacity[k] for k in ("requests_per_s", "latency_ms", "status_counts", "concurrency", "requests")},
        "rate_per_s": round(rate, 2),
        "totals": totals,
        "server_exit_status": exit_code,
        "summary": summary,
        "windows": windows,
    }
    (out / "soak.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    plot(windows, summary, f"albert-ner serve at {rate:.0f} req/s ({args.fraction:g} x capacity {capacity['requests_per_s']:.0f})",
         out / "soak.png")
    print(json.dumps(summary, indent=2))
    print(f"wrote {out / 'soak.json'} and {out / 'soak.png'}")
    return 0 if exit_code == 0 and summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
