"""A spot interruption, measured: SIGTERM a `train` run mid-way, time its exit, resume it.

Trains the micro model on generated data twice with the same options: once uninterrupted, once
SIGTERMed after its third evaluation and then rerun with `--resume`. Prints one JSON line: the
seconds from the signal to the process's exit, the exit status and log line, and whether the
resumed run's metrics (timing fields aside) and weights equal the uninterrupted run's.

  python benchmarks/sigterm_resume.py OUT_DIR
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from albert_ner.data.synthetic import write_synthetic_split

TIMING_FIELDS = {"samples_per_sec", "wall_time", "eval_seconds"}  # differ between any two runs


def metrics_without_timing(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_FIELDS}
            for line in path.read_text(encoding="utf-8").splitlines()]


def same_weights(a: Path, b: Path) -> bool:
    with np.load(a) as x, np.load(b) as y:
        return x.files == y.files and all(np.array_equal(x[k], y[k]) for k in x.files)


def main(root: Path) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    data = write_synthetic_split(root / "data", seed=7, n_train=600, n_dev=120, n_test=120)
    options = ["--train-file", str(data["train"]), "--dev-file", str(data["dev"]), "--model-config", "micro",
               "--max-steps", "300", "--eval-every", "50", "--log-every", "50", "--batch-size", "16",
               "--max-seq-length", "40", "--seed", "3"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    train = [sys.executable, "-m", "albert_ner.cli", "train", *options]
    full = subprocess.run([*train, "--output-dir", str(root / "full")], capture_output=True, text=True, env=env)
    if full.returncode != 0:
        raise RuntimeError(full.stderr[-2000:])

    run = root / "interrupted"
    child = subprocess.Popen([*train, "--output-dir", str(run)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=env)
    metrics = run / "metrics.jsonl"
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        time.sleep(0.05)
    signalled = time.monotonic()
    child.send_signal(signal.SIGTERM)
    output, _ = child.communicate()
    seconds = time.monotonic() - signalled
    resumed = subprocess.run([*train, "--output-dir", str(run), "--resume"], capture_output=True, text=True, env=env)
    return {
        "exit_status": child.returncode,
        "seconds_from_sigterm_to_exit": round(seconds, 2),
        "log_line": [line for line in output.splitlines() if line.startswith("interrupted by SIGTERM")],
        "resume_exit_status": resumed.returncode,
        "metrics_equal_timing_aside": metrics_without_timing(metrics) == metrics_without_timing(root / "full" / "metrics.jsonl"),
        "weights_bit_identical": same_weights(run / "weights.npz", root / "full" / "weights.npz"),
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(json.dumps(main(Path(sys.argv[1])), ensure_ascii=False))
