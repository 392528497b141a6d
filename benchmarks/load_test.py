"""Load test of `albert-ner serve` with dynamic batching on and off (issue 10).

Starts the server on 127.0.0.1, sends REQUESTS one-sentence requests (real MSRA test
sentences; generated ones without the corpus) from CONCURRENCY keep-alive clients with
MALFORMED bad requests mixed in, and checks every answer against an offline `Predictor` run:
zero 5xx, zero wrong answers, every bad request refused with a 4xx, no request refused for a
full queue. Reports requests/s, characters/s, p50/p95/p99 latency, texts per model call and
CPU time per request of server and load generator for each mode, and the batching on/off
throughput ratio; writes OUT/load_test.json and OUT/load_test.png, and exits 1 when a check
fails. The logic is `albert_ner.serving.loadtest`; this script only wires it up.

The load generator is a process of its own. `--server-cpus 1 --client-cpus 0` pins server
and generator to separate cores (Linux), so on a 2-core machine they do not take turns.

  python benchmarks/load_test.py                          # trains the default model (chars) first
  python benchmarks/load_test.py --train micro            # ... or a micro ALBERT
  python benchmarks/load_test.py --model-dir runs/tiny    # a trained model directory
  python benchmarks/load_test.py --server-cpus 1 --client-cpus 0
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from albert_ner.serving.loadtest import (  # noqa: E402
    ServerProcess,
    get,
    parse_cpus,
    plot_load_tests,
    run_load_test,
)
from albert_ner.serving.server import http_stack  # noqa: E402

MODES = {"batching on": [], "batching off": ["--no-batching"]}
# What --train trains when no --model-dir is given: (TrainArgs options, MSRA sentences).
# chars is `albert-ner train`'s default without --model-config (train.recipe): character +
# bigram embeddings, BiLSTM, CRF; about a minute on 2 cores. One model, not the ensemble the
# recipe trains for sets this small: the large-set default is what gets served most, and the
# numbers stay comparable with earlier runs. micro is a 2-layer ALBERT.
TRAIN = {
    "chars": (dict(max_steps=300, batch_size=16, ensemble=1), 4000),
    "micro": (dict(model_config="micro", max_steps=200, batch_size=16, max_seq_length=64), 3000),
}
CHECKS = ("errors_5xx", "rejected_busy", "wrong_answers", "malformed_not_4xx", "good_not_200", "transport_errors")


def load_texts(msra_test: Path, count: int) -> tuple[list[str], str]:
    """Up to `count` distinct non-empty sentences, and where they came from."""
    from albert_ner.data.readers import read_conll

    if msra_test.exists():
        examples, source = read_conll(msra_test).examples, str(msra_test)
    else:
        from albert_ner.data.synthetic import make_synthetic_corpus

        examples, source = make_synthetic_corpus(count, seed=5), "generated (albert_ner.data.synthetic)"
    texts = list(dict.fromkeys(e.text for e in examples if e.text))[:count]
    return texts, source


def train_model(kind: str, out: Path, msra_dir: Path) -> Path:
    """A `kind` model (see TRAIN) on MSRA's first training sentences, else on generated data."""
    from albert_ner.train.loop import TrainArgs, run_training

    options, sentences = TRAIN[kind]
    if (msra_dir / "train.txt").exists():
        train, limit = msra_dir / "train.txt", sentences
    else:
        from albert_ner.data.synthetic import write_synthetic_split

        data = write_synthetic_split(out / "data", seed=7, n_train=600, n_dev=120, n_test=120)
        train, limit = data["train"], None
    run_training(TrainArgs(train_file=str(train), dev_file=None, output_dir=str(out / kind), log_every=50,
                           max_train_sentences=limit, seed=3, **options))
    return out / kind


def run_mode(label: str, options: list[str], model_dir: Path, texts: list[str], expected: dict,
             args, scratch: Path) -> tuple[dict, int]:
    """One server, one load test: the result with the server's counters, and its exit status."""
    log_path = scratch / f"serve-{label.replace(' ', '-')}.log"
    with ServerProcess(model_dir, *options, log_path=log_path, cpus=parse_cpus(args.server_cpus)) as server:
        server.wait_ready()
        before, cpu_before = _ping(server.url), server.cpu_seconds()
        result = run_load_test(server.url, texts, concurrency=args.concurrency, requests=args.requests,
                               malformed=args.malformed, expected=expected,
                               client_cpus=parse_cpus(args.client_cpus))
        after, cpu_after = _ping(server.url), server.cpu_seconds()
        exit_code = server.stop()
    calls = after["model_calls"] - before["model_calls"]
    answered = result["requests"] + result["malformed"]
    result.update(
        model_calls=calls,
        texts_per_model_call=round((after["texts"] - before["texts"]) / calls, 2) if calls else None,
        # The model thread's share of the wall time: near 100 % means the model is the limit.
        model_busy=round((after["model_seconds"] - before["model_seconds"]) / result["seconds"], 3),
        server_cpu_ms_per_request=(round(1000 * (cpu_after - cpu_before) / answered, 3)
                                   if cpu_before is not None else None),
        client_cpu_ms_per_request=round(1000 * result["client_cpu_seconds"] / answered, 3),
        server_cpus=sorted(server.cpus) if server.cpus else None,
    )
    return result, exit_code


def table(results: dict[str, dict]) -> str:
    """The results as a Markdown table (the layout of BENCHMARKS.md)."""
    lines = ["| batching | requests/s | characters/s | p50 / p95 / p99 latency (ms) | model calls | texts per call "
             "| model busy | server / client CPU per request (ms) | 5xx | busy 503 | wrong answers | malformed → 4xx |",
             "|---|---:|---:|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for label, r in results.items():
        lat = r["latency_ms"]
        refused = r["malformed"] - r["malformed_not_4xx"]
        lines.append(
            f"| {label.removeprefix('batching ')} | {r['requests_per_s']:.1f} | {r['chars_per_s']:,.0f} "
            f"| {lat['p50']:.0f} / {lat['p95']:.0f} / {lat['p99']:.0f} | {r['model_calls']:,} "
            f"| {r['texts_per_model_call']} | {100 * r['model_busy']:.0f} % "
            f"| {r['server_cpu_ms_per_request']} / {r['client_cpu_ms_per_request']} | {r['errors_5xx']} "
            f"| {r['rejected_busy']} | {r['wrong_answers']} | {refused} / {r['malformed']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model-dir", help="model directory to serve (default: train one first, see --train)")
    source.add_argument("--train", choices=sorted(TRAIN), default="chars",
                        help="model to train when no --model-dir is given (default: chars, the no-download default)")
    parser.add_argument("--msra-test", default=str(REPO.parent / "shared" / "data" / "msra" / "test.txt"),
                        help="CoNLL file whose sentences are sent")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--malformed", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--server-cpus", help='pin the server to these CPUs, e.g. "1" (Linux; default: not pinned)')
    parser.add_argument("--client-cpus", help='pin the load generator to these CPUs, e.g. "0"')
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "load_test"), help="directory for the JSON and PNG")
    args = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="albert-ner-load-"))
    if args.model_dir:
        model_dir, trained = Path(args.model_dir), None
    else:
        started = time.time()
        model_dir, trained = train_model(args.train, scratch, Path(args.msra_test).parent), args.train
        print(f"trained {args.train} in {time.time() - started:.0f}s", file=sys.stderr)
    texts, texts_source = load_texts(Path(args.msra_test), args.requests)
    print(f"{len(texts)} texts from {texts_source}; model {model_dir}; HTTP stack {http_stack()}", file=sys.stderr)

    # The right answers, offline (scores rounded as the server rounds them).
    from albert_ner.predict import Predictor

    started = time.time()
    offline = Predictor.from_model_dir(model_dir).predict(texts)
    expected = {ex.text: [e.to_json(ex.text) for e in ex.entities] for ex in offline}
    print(f"offline predictions in {time.time() - started:.1f}s", file=sys.stderr)

    results, exit_codes = {}, {}
    for label, options in MODES.items():
        results[label], exit_codes[label] = run_mode(label, options, model_dir, texts, expected, args, scratch)
        r = results[label]
        print(f"{label}: {r['requests_per_s']:.1f} req/s, {r['texts_per_model_call']} texts per model call, "
              f"model busy {100 * r['model_busy']:.0f} %, statuses {r['status_counts']}", file=sys.stderr)

    speedup = results["batching on"]["requests_per_s"] / results["batching off"]["requests_per_s"]
    failures = [f"{label}: {key}={result[key]}" for label, result in results.items() for key in CHECKS if result[key]]
    failures += [f"{label}: server exit status {code}" for label, code in exit_codes.items() if code != 0]
    report = {
        "date": datetime.date.today().isoformat(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        # Server settings given through the environment (inherited by the server processes)
        "environment": {k: v for k, v in os.environ.items() if k.startswith(("ALBERT_NER_", "SAGEMAKER_"))},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_at_end": os.getloadavg(),
        "http_stack": http_stack(),
        "server_cpus": args.server_cpus,
        "client_cpus": args.client_cpus,
        "model_dir": str(model_dir),
        "trained_here": trained,
        "model_config": json.loads((model_dir / "model_config.json").read_text()) if (model_dir / "model_config.json").exists() else None,
        "texts_source": texts_source,
        "results": results,
        "speedup_batching": round(speedup, 2),
        "failures": failures,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "load_test.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    plot_load_tests(results, out / "load_test.png")
    print(table(results))
    print(f"\nbatching on / off throughput: {speedup:.2f}x; wrote {out / 'load_test.json'} and {out / 'load_test.png'}")
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


def _ping(url: str) -> dict:
    status, body = get(url + "/ping")
    if status != 200:
        raise RuntimeError(f"/ping answered {status}: {body[:200]!r}")
    return json.loads(body)


if __name__ == "__main__":
    sys.exit(main())
