"""Load test of `albert-ner serve` with dynamic batching on and off (issue 10).

Starts the server on 127.0.0.1, sends REQUESTS one-sentence requests (real MSRA test
sentences; generated ones without the corpus) from CONCURRENCY clients with MALFORMED bad
requests mixed in, and checks every answer against an offline `Predictor` run: zero 5xx, zero
wrong answers, every bad request refused with a 4xx. Reports requests/s, characters/s and
p50/p95/p99 latency per mode, writes OUT/load_test.json and OUT/load_test.png, and exits 1
when a check fails. The logic is `albert_ner.serving.loadtest`; this script only wires it up.

  python benchmarks/load_test.py --model-dir runs/tiny              # a trained model directory
  python benchmarks/load_test.py                                    # trains a micro model first
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

from albert_ner.serving.loadtest import ServerProcess, plot_load_tests, run_load_test  # noqa: E402

MODES = {"batching on": [], "batching off": ["--no-batching"]}


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


def train_micro(out: Path, msra_dir: Path) -> Path:
    """A micro model in a minute or two, when no --model-dir is given (MSRA sample, else generated)."""
    from albert_ner.train.loop import TrainArgs, run_training

    if (msra_dir / "train.txt").exists():
        train, limit = msra_dir / "train.txt", 3000
    else:
        from albert_ner.data.synthetic import write_synthetic_split

        data = write_synthetic_split(out / "data", seed=7, n_train=600, n_dev=120, n_test=120)
        train, limit = data["train"], None
    run_training(TrainArgs(train_file=str(train), dev_file=None, output_dir=str(out / "micro"),
                           model_config="micro", max_steps=200, log_every=50, batch_size=16,
                           max_seq_length=64, max_train_sentences=limit, seed=3))
    return out / "micro"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", help="model directory to serve (default: train a micro model first)")
    parser.add_argument("--msra-test", default=str(REPO.parent / "shared" / "data" / "msra" / "test.txt"),
                        help="CoNLL file whose sentences are sent")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--malformed", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "load_test"), help="directory for the JSON and PNG")
    args = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="albert-ner-load-"))
    model_dir = Path(args.model_dir) if args.model_dir else train_micro(scratch, Path(args.msra_test).parent)
    texts, source = load_texts(Path(args.msra_test), args.requests)
    print(f"{len(texts)} texts from {source}; model {model_dir}", file=sys.stderr)

    # The right answers, offline (scores rounded as the server rounds them).
    from albert_ner.predict import Predictor

    started = time.time()
    offline = Predictor.from_model_dir(model_dir).predict(texts)
    expected = {ex.text: [e.to_json(ex.text) for e in ex.entities] for ex in offline}
    print(f"offline predictions in {time.time() - started:.1f}s", file=sys.stderr)

    results, exit_codes = {}, {}
    for label, options in MODES.items():
        with ServerProcess(model_dir, *options, log_path=scratch / f"serve-{label.replace(' ', '-')}.log") as server:
            server.wait_ready()
            result = run_load_test(server.url, texts, concurrency=args.concurrency, requests=args.requests,
                                   malformed=args.malformed, expected=expected)
            status, body = _ping(server.url)
            result["model_calls"] = body.get("model_calls")
            exit_codes[label] = server.stop()
        results[label] = result
        print(f"{label}: {result['requests_per_s']:.1f} req/s, {result['chars_per_s']:.0f} chars/s, "
              f"p50/p95/p99 {result['latency_ms']['p50']}/{result['latency_ms']['p95']}/"
              f"{result['latency_ms']['p99']} ms, statuses {result['status_counts']}, "
              f"5xx {result['errors_5xx']}, wrong {result['wrong_answers']}, "
              f"model calls {result['model_calls']}", file=sys.stderr)

    speedup = results["batching on"]["requests_per_s"] / results["batching off"]["requests_per_s"]
    failures = [
        f"{label}: {key}={result[key]}"
        for label, result in results.items()
        for key in ("errors_5xx", "wrong_answers", "malformed_not_4xx", "good_not_200", "transport_errors")
        if result[key]
    ] + [f"{label}: server exit status {code}" for label, code in exit_codes.items() if code != 0]
    report = {
        "date": datetime.date.today().isoformat(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        # Server settings given through the environment (inherited by the server processes)
        "environment": {k: v for k, v in os.environ.items() if k.startswith(("ALBERT_NER_", "SAGEMAKER_"))},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "model_dir": str(model_dir),
        "model_config": json.loads((model_dir / "model_config.json").read_text()) if (model_dir / "model_config.json").exists() else None,
        "texts_source": source,
        "results": results,
        "speedup_batching": round(speedup, 2),
        "failures": failures,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "load_test.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    plot_load_tests(results, out / "load_test.png")
    print(f"batching speed-up {speedup:.2f}x; wrote {out / 'load_test.json'} and {out / 'load_test.png'}", file=sys.stderr)
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


def _ping(url: str) -> tuple[int, dict]:
    from albert_ner.serving.loadtest import get

    status, body = get(url + "/ping")
    return status, json.loads(body)


if __name__ == "__main__":
    sys.exit(main())
