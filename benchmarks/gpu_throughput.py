"""ALBERT-base training throughput on the GPU TensorFlow finds, beside the article's K80 figure.

The article (../shared/ARTICLE.md) reports 23 samples/s training ALBERT-base (albert_base_zh)
on ml.p2.xlarge, i.e. one NVIDIA K80, with max_seq_length 128 and train_batch_size 64 (its
step 4 hyperparameters). This script times the library's own training step
(`albert_ner.train.loop.Trainer`, the step `albert-ner train` runs) on the `base` preset — the
albert_zh base shape: 12 layers sharing one block, hidden 768, embedding 128 — with a CRF head
and every batch padded to max_seq_length, as the article's script pads, on one device (the
first GPU, as the article's one K80), in four settings:

  fp32            float32 everywhere;
  fp32 + XLA      the step compiled with `jit_compile=True`;
  mixed           bf16 on compute capability >= 8.0, fp16 (dynamic loss scale) on 7.x; skipped
                  below 7.0, where there are no tensor cores (train.runtime.resolve_precision);
  mixed + XLA     both.

The vocabulary is built from the text (a few hundred characters for the generated corpus,
~5,000 for MSRA, against albert_zh's 21,128): only the embedding table's optimizer update
depends on it, which is small next to twelve 768-wide layers.

  python benchmarks/gpu_throughput.py [--batch-size 32] [--steps 50] [--out FILE.json]
  python benchmarks/gpu_throughput.py --allow-cpu --steps 3      # the same code on a CPU (micro preset)

Without a GPU (and without --allow-cpu) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# The article's figure and its setting (../shared/ARTICLE.md, steps 3 and 4). It names no
# mixed precision, and a K80 has no tensor cores: fp32 is an assumption, marked as such.
ARTICLE = {
    "samples_per_sec": 23.0,
    "device": "NVIDIA K80 (ml.p2.xlarge)",
    "model": "ALBERT-base (albert_base_zh)",
    "precision": "fp32 (assumed)",
    "batch_size": 64,
    "max_seq_length": 128,
}
CPU_MODEL_CONFIG = "micro"  # --allow-cpu without --model-config: a smoke test, not a benchmark


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per step")
    parser.add_argument("--max-seq-length", type=int, default=128, help="every batch is padded to this")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per setting")
    parser.add_argument("--warmup-steps", type=int, default=5,
                        help="untimed steps first (tracing, XLA compilation, autotuning); at least 1")
    parser.add_argument("--model-config", help="preset or config JSON (default: base; micro with --allow-cpu on a CPU)")
    parser.add_argument("--train-file", help="corpus whose sentences fill the batches (default: generated text)")
    parser.add_argument("--allow-cpu", action="store_true", help="run on the CPU when there is no GPU")
    parser.add_argument("--out", default="benchmarks/results/gpu_throughput.json", help="JSON file to write")
    args = parser.parse_args(argv)
    for name in ("batch_size", "steps", "warmup_steps"):
        if getattr(args, name) < 1:  # the first step traces (and compiles): never timed
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.max_seq_length < 3:
        parser.error("--max-seq-length must be at least 3")
    return args


def settings_for(hardware) -> tuple[list[dict], list[str]]:
    """The settings to time on this hardware, and notes on the ones skipped."""
    from albert_ner.train.runtime import resolve_precision

    settings = [{"name": "fp32", "precision": "fp32", "xla": False},
                {"name": "fp32 + XLA", "precision": "fp32", "xla": True}]
    # The same rule as `--precision auto` for a transformer: what mixed precision means here.
    mixed = resolve_precision("auto", "albert", hardware)
    if mixed.value == "fp32":
        return settings, [f"mixed precision skipped: {mixed.reason}"]
    settings += [{"name": f"{mixed.value} mixed", "precision": mixed.value, "xla": False},
                 {"name": f"{mixed.value} mixed + XLA", "precision": mixed.value, "xla": True}]
    return settings, []


def fixed_batches(features, batch_size: int, max_seq_length: int, count: int):
    """`count` batches of `batch_size` sentences, cycling through `features`, all padded to
    [batch_size, max_seq_length] so every step (and XLA compilation) sees one shape."""
    import numpy as np

    from albert_ner.train.batching import pad_batch

    batches = []
    for i in range(count):
        chosen = [features[(i * batch_size + j) % len(features)] for j in range(batch_size)]
        ids, tags = pad_batch(chosen)
        ids = np.pad(ids, [[0, 0], [0, max_seq_length - ids.shape[1]]])
        tags = np.pad(tags, [[0, 0], [0, max_seq_length - 2 - tags.shape[1]]])
        batches.append((ids, tags))
    return batches


def measure(setting: dict, options: argparse.Namespace, train_file: str, workdir: Path) -> dict:
    """Builds a Trainer for one setting and times its training step; a failure is recorded."""
    import keras
    import numpy as np
    import tensorflow as tf

    from albert_ner.train.loop import TrainArgs, Trainer
    from albert_ner.train.runtime import restore_policy

    row = {"name": setting["name"], "precision": setting["precision"], "xla": setting["xla"]}
    previous_policy = keras.mixed_precision.global_policy().name
    log = io.StringIO()
    try:
        args = TrainArgs(
            train_file=train_file, output_dir=str(workdir / setting["name"].replace(" ", "_")),
            model_config=options.model_config, precision=setting["precision"],
            batch_size=options.batch_size, max_seq_length=options.max_seq_length,
            max_steps=options.steps + options.warmup_steps, export=False,
        )
        with contextlib.redirect_stdout(log):  # the trainer's start-up lines; kept for errors
            # One device (the first GPU), like the article's single K80, even where there are more.
            trainer = Trainer(args, strategy=tf.distribute.get_strategy(), jit_compile=setting["xla"])
        batches = fixed_batches(trainer.features, options.batch_size, options.max_seq_length,
                                options.warmup_steps + options.steps)
        global_batch = np.int32(options.batch_size)

        def step(ids, tags):  # float() waits for the device, as the training loop does
            return float(trainer._train_step(ids, tags, global_batch))

        t0 = time.perf_counter()
        for ids, tags in batches[: options.warmup_steps]:
            step(ids, tags)
        row["warmup_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for ids, tags in batches[options.warmup_steps:]:
            loss = step(ids, tags)
        seconds = time.perf_counter() - t0
        row.update(samples_per_sec=options.steps * options.batch_size / seconds,
                   ms_per_step=1000 * seconds / options.steps, last_loss=loss)
        row["encoder"] = {k: getattr(trainer.encoder_config, k) for k in
                          ("model_type", "hidden_size", "embedding_size", "num_hidden_layers",
                           "num_attention_heads", "intermediate_size", "vocab_size")}
    except Exception as err:  # noqa: BLE001 - one setting failing (e.g. XLA) must not hide the others
        row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        row["log_tail"] = log.getvalue()[-1000:]
    finally:
        restore_policy(previous_policy)
        keras.backend.clear_session()
    return row


def format_table(rows: list[dict], options: argparse.Namespace, device: str) -> str:
    article = ARTICLE["samples_per_sec"]
    lines = [
        f"Training throughput, {options.model_config}, CRF head — {device}",
        f"batch {options.batch_size}, seq {options.max_seq_length} (every batch padded to it), "
        f"{options.steps} timed steps after {options.warmup_steps} warm-up steps",
        "",
        f"{'setting':<20} {'samples/s':>10} {'ms/step':>9} {'warm-up s':>10} {'x article':>10}",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['name']:<20} failed: {row['error']}")
            continue
        lines.append(f"{row['name']:<20} {row['samples_per_sec']:>10.1f} {row['ms_per_step']:>9.1f} "
                     f"{row['warmup_seconds']:>10.1f} {row['samples_per_sec'] / article:>10.2f}")
    lines.append(
        f"{'article':<20} {article:>10.1f} {'':>9} {'':>10} {1.0:>10.2f}   "
        f"{ARTICLE['model']}, {ARTICLE['device']}, {ARTICLE['precision']}, "
        f"batch {ARTICLE['batch_size']}, seq {ARTICLE['max_seq_length']}"
    )
    if (options.batch_size, options.max_seq_length) != (ARTICLE["batch_size"], ARTICLE["max_seq_length"]) \
            or options.model_config != "base":
        lines.append(f"note: the article's row is ALBERT-base at batch {ARTICLE['batch_size']}, seq "
                     f"{ARTICLE['max_seq_length']}; this run differs in model or batch/seq, so the "
                     "ratio compares unlike settings")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    options = parse_args(argv)
    from albert_ner.train.runtime import detect_hardware

    hardware = detect_hardware()
    if not hardware.has_gpu and not options.allow_cpu:
        print("no GPU visible to TensorFlow (tf.config.list_physical_devices('GPU') is empty): "
              "nothing to measure. Run this on a GPU machine with the CUDA TensorFlow wheel; "
              "--allow-cpu runs the same code on the CPU.")
        return 0
    if options.model_config is None:
        options.model_config = "base" if hardware.has_gpu else CPU_MODEL_CONFIG
    device = hardware.describe()
    settings, skipped = settings_for(hardware)
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="gpu_throughput_") as tmp:
        workdir = Path(tmp)
        train_file = options.train_file
        if train_file is None:
            from albert_ner.data.synthetic import write_synthetic_split

            count = max(256, options.batch_size)
            train_file = str(write_synthetic_split(workdir / "data", seed=0, n_train=count, n_dev=1, n_test=1)["train"])
        rows = []
        for setting in settings:
            row = measure(setting, options, train_file, workdir)
            rows.append(row)
            shown = f"{row['samples_per_sec']:.1f} samples/s" if "error" not in row else f"failed: {row['error']}"
            print(f"{setting['name']}: {shown}", file=sys.stderr, flush=True)
    print(format_table(rows, options, device))
    for note in skipped:
        print(note)
    result = {
        "device": device,
        "gpus": [{"name": g.name, "compute_capability": g.compute_capability} for g in hardware.gpus],
        "tensorflow": tf.__version__,
        "model_config": options.model_config,
        "batch_size": options.batch_size,
        "max_seq_length": options.max_seq_length,
        "steps": options.steps,
        "warmup_steps": options.warmup_steps,
        "results": rows,
        "skipped": skipped,
        "article": ARTICLE,
    }
    out = Path(options.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 1 if all("error" in row for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
