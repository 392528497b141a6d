"""Training-step throughput of ALBERT-tiny + CRF on real MSRA batches, per recipe choice.

Measures samples/s (sentences per second) and real-token share for:
  * batching: random batches padded to max_seq_length (the article's script), random batches
    padded to their longest member, and our length-bucketed batches;
  * precision: fp32 and mixed bf16;
  * head: CRF and softmax.
Each configuration runs warm-up steps (tracing) and then STEPS timed steps of the real
training function, in a fresh process so the Keras precision policy does not leak.

  python benchmarks/throughput.py --msra-dir ../shared/data/msra --out benchmarks/results/throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

CONFIGS = [
    {"batching": "fixed128", "precision": "fp32", "head": "crf"},
    {"batching": "random", "precision": "fp32", "head": "crf"},
    {"batching": "bucketed", "precision": "fp32", "head": "crf"},
    {"batching": "bucketed", "precision": "bf16", "head": "crf"},
    {"batching": "bucketed", "precision": "bf16", "head": "softmax"},
]


def measure(msra_dir: str, batching: str, precision: str, head: str, steps: int, batch_size: int) -> dict:
    import numpy as np

    from albert_ner.train.batching import epoch_batches, pad_batch
    from albert_ner.train.loop import TrainArgs, Trainer

    args = TrainArgs(
        train_file=os.path.join(msra_dir, "train.txt"), output_dir="/tmp/throughput_bench",
        model_config="tiny", head=head, precision=precision, batch_size=batch_size,
        max_steps=1000, export=False,
    )
    trainer = Trainer(args)
    lengths = trainer.lengths
    if batching == "bucketed":
        batches = epoch_batches(lengths, batch_size, seed=0, epoch=0)
    else:
        order = np.random.default_rng(0).permutation(len(lengths))
        batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]

    def run(batch):
        ids, tags = pad_batch([trainer.features[i] for i in batch])
        if batching == "fixed128":
            ids = np.pad(ids, [[0, 0], [0, 128 - ids.shape[1]]])
            tags = np.pad(tags, [[0, 0], [0, 126 - tags.shape[1]]])
        trainer._train_step(ids, tags, np.int32(len(batch)))
        return ids

    for batch in batches[:5]:  # tracing and warm-up
        run(batch)
    real = padded = samples = 0
    start = time.perf_counter()
    for batch in batches[5 : 5 + steps]:
        ids = run(batch)
        samples += len(batch)
        real += int((ids != 0).sum())
        padded += ids.size
    seconds = time.perf_counter() - start
    return {
        "batching": batching, "precision": precision, "head": head, "steps": steps,
        "batch_size": batch_size, "samples_per_sec": samples / seconds,
        "seconds_per_step": seconds / steps, "real_token_share": real / padded,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--msra-dir", default=os.environ.get("MSRA_DIR", "../shared/data/msra"))
    parser.add_argument("--out", default="benchmarks/results/throughput.json")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--one", help="internal: run one configuration given as JSON")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.msra_dir, steps=args.steps, batch_size=args.batch_size, **json.loads(args.one))))
        return 0
    results = []
    for config in CONFIGS:
        out = subprocess.run(
            [sys.executable, __file__, "--msra-dir", args.msra_dir, "--steps", str(args.steps),
             "--batch-size", str(args.batch_size), "--one", json.dumps(config)],
            capture_output=True, text=True, check=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(result), flush=True)
        results.append(result)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump({"machine": machine, "results": results}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
