"""The load test's requests/s checked with an independent tool: our load generator and wrk, interleaved.

One `albert-ner serve` on 127.0.0.1 (one worker, dynamic batching, default settings) over the
model of `benchmarks/load_test.py`; the same requests — the load test's list
(`serving.loadtest.load_test_requests`: REQUESTS one-sentence JSON requests with MALFORMED bad
ones mixed in) — sent ROUNDS times by each tool, alternating which goes first:

  ours  `run_load_test`: CONCURRENCY keep-alive clients, closed loop, each request once
  wrk   `wrk -t1 -cCONCURRENCY -dSECONDS --latency -s benchmarks/wrk_payloads.lua`, the same
        list cycled for SECONDS (wrk 4 is closed-loop per connection too)

Both are compared on answers per second (every status, as wrk counts them) and on the load
test's headline, 200 answers to good requests per second (wrk's: its rate times its share of
2xx answers). Writes OUT/wrk_crosscheck.json with the machine, the command and every run.

  apt-get install -y wrk
  python benchmarks/wrk_crosscheck.py --model-dir runs/msra [--rounds 3]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from albert_ner.serving.loadtest import ServerProcess, load_test_requests, run_load_test  # noqa: E402
from albert_ner.serving.server import http_stack  # noqa: E402

LUA = REPO / "benchmarks" / "wrk_payloads.lua"


def write_payloads(jobs: list, path: Path) -> Path:
    """The payload file `wrk_payloads.lua` reads: "<type> <length>\\n<body>\\n" per request."""
    with path.open("wb") as fh:
        for _, _, body, content_type in jobs:
            fh.write(f"{content_type} {len(body)}\n".encode("ascii") + body + b"\n")
    return path


def run_ours(url: str, texts: list[str], args, server: ServerProcess) -> dict:
    """One run of the project's load generator; answers/s over every status, as wrk counts."""
    cpu = server.cpu_seconds()
    r = run_load_test(url, texts, concurrency=args.concurrency, requests=args.requests, malformed=args.malformed)
    answers = sum(r["status_counts"].values())
    return {"tool": "ours", "answers_per_s": round(answers / r["seconds"], 1),
            "good_200_per_s": r["requests_per_s"], "seconds": r["seconds"], "answers": answers,
            "p50_ms": r["latency_ms"]["p50"], "p99_ms": r["latency_ms"]["p99"],
            "status_counts": r["status_counts"], "transport_errors": r["transport_errors"],
            "client_cpu_ms_per_request": round(1000 * r["client_cpu_seconds"] / answers, 3),
            "server_cpu_ms_per_request": round(1000 * (server.cpu_seconds() - cpu) / answers, 3)}


def run_wrk(url: str, payloads: Path, args, server: ServerProcess) -> dict:
    """One wrk run; its report parsed (rate, non-2xx count, socket errors, percentiles)."""
    command = ["wrk", "-t1", f"-c{args.concurrency}", f"-d{args.wrk_seconds}s", "--latency",
               "-s", str(LUA), url, "--", str(payloads)]
    cpu, children = server.cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    total, seconds = (float(x) for x in re.search(r"(\d+) requests in ([\d.]+)(?:s)", out).groups())
    non_2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    socket_errors = re.search(r"Socket errors: (.*)", out)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return {"tool": "wrk", "answers_per_s": rate, "good_200_per_s": round(rate * (1 - non_2xx / total), 1),
            "seconds": seconds, "answers": int(total), "non_2xx": non_2xx,
            "p50_ms": _wrk_ms(out, "50%"), "p99_ms": _wrk_ms(out, "99%"),
            "socket_errors": socket_errors.group(1) if socket_errors else None,
            "client_cpu_ms_per_request": round(1000 * ((after.ru_utime + after.ru_stime) -
                                                       (children.ru_utime + children.ru_stime)) / total, 3),
            "server_cpu_ms_per_request": round(1000 * (server.cpu_seconds() - cpu) / total, 3),
            "command": " ".join(command)}


def _wrk_ms(report: str, quantile: str) -> float:
    """A latency percentile of wrk's --latency table in ms ("50%   12.34ms", "us" or "s")."""
    value, unit = re.search(rf"^\s+{re.escape(quantile)}\s+([\d.]+)(us|ms|s)\s*$", report, re.M).groups()
    return round(float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit], 2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", help="model directory (default: train load_test.py's default model)")
    parser.add_argument("--msra-test", default=str(REPO.parent / "shared" / "data" / "msra" / "test.txt"))
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--malformed", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wrk-seconds", type=int, default=10)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "wrk_crosscheck"))
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2

    import load_test  # benchmarks/load_test.py: the same model and texts
    from soak import machine

    scratch = Path(tempfile.mkdtemp(prefix="albert-ner-wrk-"))
    model_dir = Path(args.model_dir) if args.model_dir else load_test.train_model("chars", scratch, Path(args.msra_test).parent)
    texts, texts_source = load_test.load_texts(Path(args.msra_test), args.requests)
    payloads = write_payloads(load_test_requests(texts, args.requests, args.malformed), scratch / "payloads.bin")

    runs = []
    with ServerProcess(model_dir, log_path=scratch / "serve.log") as server:
        server.wait_ready()
        run_load_test(server.url, texts, concurrency=args.concurrency, requests=500, malformed=0)  # warm-up, not kept
        for round_ in range(args.rounds):
            order = ("ours", "wrk") if round_ % 2 == 0 else ("wrk", "ours")  # alternate against drift
            for tool in order:
                run = run_ours(server.url, texts, args, server) if tool == "ours" else run_wrk(server.url, payloads, args, server)
                run.update(round=round_ + 1, load_average_1m=round(os.getloadavg()[0], 2), at=time.strftime("%H:%M:%S"))
                runs.append(run)
                print(f"round {round_ + 1} {tool}: {run['answers_per_s']} answers/s, {run['good_200_per_s']} good 200/s, "
                      f"p50/p99 {run['p50_ms']}/{run['p99_ms']} ms, load {run['load_average_1m']}", file=sys.stderr)
        exit_code = server.stop()

    def median(tool, key):
        return statistics.median(r[key] for r in runs if r["tool"] == tool)

    summary = {key: {"ours": median("ours", key), "wrk": median("wrk", key),
                     "ours_over_wrk": round(median("ours", key) / median("wrk", key), 3)}
               for key in ("answers_per_s", "good_200_per_s", "p50_ms", "p99_ms", "client_cpu_ms_per_request",
                           "server_cpu_ms_per_request")}
    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
              "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "machine": machine(), "http_stack": http_stack(), "model_dir": str(model_dir),
              "texts_source": texts_source, "wrk_version": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0],
              "settings": vars(args), "runs": runs, "medians": summary, "server_exit_status": exit_code}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "wrk_crosscheck.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))
    print(f"wrote {out / 'wrk_crosscheck.json'}")
    return 0 if exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
