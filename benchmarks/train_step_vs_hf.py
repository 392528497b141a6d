"""Training-step throughput: this project (TensorFlow) vs Hugging Face (PyTorch), one machine.

Both sides train the same encoder shape with a CRF head on the same synthetic batch
(batch 32 × sequence 128 by default, every token real) and time one step = forward +
backward + AdamW + gradient clipping:

  ours    the library's own training step: `albert_ner.train.loop.Trainer` built on a
          generated training file, then its compiled step function (`Trainer._train_step`,
          the function `Trainer.run` calls every step; the library has no public one-step
          API) — AdamW with warm-up/decay, a separate CRF optimizer, `--precision bf16` as
          the Keras mixed policy, TF op determinism as `albert-ner train` sets it on a CPU.
  theirs  transformers `AlbertForTokenClassification` / `BertForTokenClassification` (random
          weights from a config) + `torchcrf.CRF`, torch AdamW, `clip_grad_norm_`; bf16 via
          `torch.autocast("cpu", dtype=torch.bfloat16)` (benchmarks/peers/hf_train_step.py).

Models: `tiny` = albert_zh tiny (the `tiny` preset), `base` = BERT-base Chinese (the
`bert-base` preset); any other preset name of `albert_ner.model.config.PRESETS` works too.
Every measurement is a fresh subprocess (ours with this python, theirs with the peer venv's),
pinned to the same CPUs with the same thread counts; rounds interleave ours, theirs, ours,
theirs … and the table reports the median samples/s per side and their ratio.

  benchmarks/peers/make_venv.sh        # once: the peer venv
  .venv/bin/python benchmarks/train_step_vs_hf.py --out benchmarks/results/peers
  .venv/bin/python benchmarks/train_step_vs_hf.py --models tiny --precisions fp32 --steps 2 --rounds 1 --out /tmp/peers  # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers"))

import bench_common as bc  # noqa: E402

HF_CHILD = HERE / "peers" / "hf_train_step.py"
# "base" in this comparison is BERT-base Chinese, the model users fine-tune most often.
MODEL_ALIASES = {"base": "bert-base"}
# The training recipe both sides use: `albert-ner train` defaults for a transformer from
# random init (train.recipe, TrainArgs); the peer gets the same numbers.
RECIPE = {"learning_rate": 1e-3, "crf_learning_rate": 1e-2, "weight_decay": 0.01, "clip_norm": 1.0,
          "classifier_dropout": 0.1, "schedule_steps": 1000}


def encoder_shape(model: str, vocab_size: int) -> dict:
    """The preset's encoder fields the peer needs to build the same shape."""
    from albert_ner.model.config import EncoderConfig

    config = EncoderConfig.resolve(MODEL_ALIASES.get(model, model), vocab_size=vocab_size)
    shape = config.to_dict()
    shape["classifier_dropout"] = RECIPE["classifier_dropout"]
    return shape


# ----------------------------------------------------------------------------- our child


def _write_inputs(workdir: Path, ids: list, tags: list, vocab_size: int) -> tuple[Path, Path]:
    """A vocab of `vocab_size` entries and a CoNLL file holding exactly the synthetic batch."""
    from albert_ner.data.example import Example
    from albert_ner.data.schemes import tags_to_entities
    from albert_ner.data.writers import write_conll
    from albert_ner.text.vocab import BUILD_SPECIALS, Vocab

    # CJK ideographs are their own canonical form, so the tokenizer maps each back to its id.
    pool = [chr(c) for c in range(0x4E00, 0xA000)] + [chr(c) for c in range(0x3400, 0x4DC0)]
    chars = pool[: vocab_size - len(BUILD_SPECIALS)]
    vocab = Vocab(list(BUILD_SPECIALS) + chars)
    vocab_file = workdir / "vocab.txt"
    vocab.save(vocab_file)
    examples = []
    for row_ids, row_tags in zip(ids, tags):
        text = "".join(vocab.tokens[i] for i in row_ids)
        examples.append(Example(text, tags_to_entities(row_tags, "bio")[0]))
    train_file = write_conll(examples, workdir / "train.txt")
    return vocab_file, Path(train_file)


def ours_child() -> int:
    """Times the library's training step (see module docstring) and writes the result."""
    spec, result_path = bc.child_io()
    bc.pin_to(spec["cpus"])
    import numpy as np
    import tensorflow as tf

    threads = spec["threads"]
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    from albert_ner.train.batching import pad_batch
    from albert_ner.train.loop import TrainArgs, Trainer

    batch, seq = spec["batch_size"], spec["seq_len"]
    ids, tags = bc.synthetic_batch(batch, seq - 2, spec["shape"]["vocab_size"])
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="train_step_ours_") as tmp:
        vocab_file, train_file = _write_inputs(Path(tmp), ids, tags, spec["shape"]["vocab_size"])
        args = TrainArgs(
            train_file=str(train_file), output_dir=str(Path(tmp) / "model"),
            model_config=spec["preset"], vocab_file=str(vocab_file), head="crf",
            precision=spec["precision"], batch_size=batch, max_seq_length=seq,
            max_steps=RECIPE["schedule_steps"], learning_rate=spec["learning_rate"],
            crf_learning_rate=spec["crf_learning_rate"], weight_decay=spec["weight_decay"],
            clip_norm=spec["clip_norm"], classifier_dropout=spec["shape"]["classifier_dropout"],
            lstm_units=0, bigram_buckets=0, bigram_size=0,
            deterministic=spec["deterministic"], export=False,
        )
        trainer = Trainer(args)
    input_ids, tag_ids = pad_batch(trainer.features[:batch])
    expected = np.asarray([[bc.CLS_ID, *row, bc.SEP_ID] for row in ids], np.int32)
    if input_ids.shape != (batch, seq) or not np.array_equal(input_ids, expected):
        raise RuntimeError(f"the library built batch {input_ids.shape}, not the synthetic ({batch}, {seq})")
    global_batch = np.int32(batch)

    def step() -> float:
        return float(trainer._train_step(input_ids, tag_ids, global_batch))  # float() waits for it

    build_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(spec["warmup_steps"]):
        step()
    warmup_seconds = time.perf_counter() - started
    losses, started = [], time.perf_counter()
    for _ in range(spec["steps"]):
        losses.append(step())
    seconds = time.perf_counter() - started

    import keras

    bc.write_result(result_path, {
        "side": "ours",
        "implementation": "albert_ner Trainer step (tf.function), Keras AdamW ×2 (encoder, CRF)",
        "samples_per_sec": batch * spec["steps"] / seconds,
        "seconds_per_step": seconds / spec["steps"],
        "build_seconds": build_seconds,
        "warmup_seconds": warmup_seconds,
        "final_loss": losses[-1],
        "parameters": int(sum(np.prod(v.shape) for v in trainer.model.trainable_variables)),
        "keras_policy": keras.mixed_precision.global_policy().name,
        "threads": {"tf_intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                    "tf_inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
        "deterministic": spec["deterministic"],
        "versions": {"python": sys.version.split()[0], "tensorflow": tf.__version__,
                     "keras": keras.__version__,
                     "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)")},
        "peak_rss_mb": bc.peak_rss_mb(),
    })
    return 0


# ----------------------------------------------------------------------------- the parent


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="tiny,base", help="comma list: tiny, base (= BERT-base) or a preset")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--steps", type=int, default=20, help="timed steps per round (tiny and other small models)")
    p.add_argument("--base-steps", type=int, default=3, help="timed steps per round for base")
    p.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first (tracing, caches)")
    p.add_argument("--base-warmup-steps", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3, help="interleaved ours/theirs rounds (median reported)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128, help="tokens per row incl. [CLS]/[SEP], all real")
    p.add_argument("--vocab-size", type=int, default=21128)
    p.add_argument("--cpus", help="CPU ids for every child, e.g. 0 or 0,1 (default: all)")
    p.add_argument("--threads", type=int, help="intra/inter-op threads on both sides (default: one per CPU)")
    p.add_argument("--tf-deterministic", choices=("on", "off"), default="on",
                   help="TF op determinism for ours (on = what `albert-ner train` does on a CPU)")
    p.add_argument("--sides", default="ours,theirs", help="ours,theirs or one of them")
    p.add_argument("--peer-python", help=f"the peer venv's python (default {bc.DEFAULT_PEER_VENV}/bin/python)")
    p.add_argument("--work-dir", help="child specs/logs/results (default: a new temporary directory)")
    p.add_argument("--out", default="benchmarks/results/peers", help="directory for train_step.json")
    p.add_argument("--child", choices=("ours",), help=argparse.SUPPRESS)
    args, rest = p.parse_known_args(argv)
    if rest and not args.child:  # a child also gets --spec/--result (bench_common.child_io)
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    return args


def child_spec(args, model: str, precision: str, cpus: list[int], threads: int) -> dict:
    big = MODEL_ALIASES.get(model, model) == "bert-base"
    return {
        "model": model, "preset": MODEL_ALIASES.get(model, model), "precision": precision,
        "shape": encoder_shape(model, args.vocab_size),
        "batch_size": args.batch_size, "seq_len": args.seq_len,
        "steps": args.base_steps if big else args.steps,
        "warmup_steps": args.base_warmup_steps if big else args.warmup_steps,
        "cpus": cpus, "threads": threads, "deterministic": args.tf_deterministic == "on",
        **RECIPE,
    }


def summarize(side_rounds: list[dict]) -> dict | None:
    if not side_rounds:
        return None
    first = side_rounds[0]
    return {
        "samples_per_sec_median": bc.median([r["samples_per_sec"] for r in side_rounds]),
        "seconds_per_step_median": bc.median([r["seconds_per_step"] for r in side_rounds]),
        "implementation": first["implementation"],
        "parameters": first["parameters"],
        "threads": first["threads"],
        "versions": first["versions"],
        "deterministic": first["deterministic"],
        "peak_rss_mb_max": max(r["peak_rss_mb"] for r in side_rounds),
        "rounds": side_rounds,
    }


def markdown(results: list[dict]) -> str:
    lines = ["| model | precision | ours samples/s | HF samples/s | ours / HF | ours s/step | HF s/step | rounds |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    fmt = lambda v, spec: "—" if v is None else format(v, spec)  # noqa: E731
    for r in results:
        ours, theirs = r["ours"] or {}, r["theirs"] or {}
        lines.append(
            f"| {r['model']} ({r['preset']}) | {r['precision']} "
            f"| {fmt(ours.get('samples_per_sec_median'), '.1f')} | {fmt(theirs.get('samples_per_sec_median'), '.1f')} "
            f"| {fmt(r['ratio_ours_over_theirs'], '.2f')} "
            f"| {fmt(ours.get('seconds_per_step_median'), '.3f')} | {fmt(theirs.get('seconds_per_step_median'), '.3f')} "
            f"| {r['rounds']} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child == "ours":
        return ours_child()
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if not set(sides) <= {"ours", "theirs"} or not sides:
        raise SystemExit(f"--sides must name ours and/or theirs, got {args.sides!r}")
    peer = bc.peer_python(args.peer_python) if "theirs" in sides else None
    cpus = bc.parse_cpus(args.cpus)
    threads = args.threads or len(cpus)
    out = Path(args.out)
    # Child specs, logs and results (and the shape-only export) stay out of --out, which
    # holds only what is worth keeping.
    workdir = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="peers_train_"))
    print(f"child logs in {workdir}", flush=True)
    machine = bc.machine_info()
    commands = {"ours": [sys.executable, Path(__file__).resolve(), "--child", "ours"],
                "theirs": [peer, HF_CHILD]}

    results = []
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        for precision in [p.strip() for p in args.precisions.split(",") if p.strip()]:
            spec = child_spec(args, model, precision, cpus, threads)
            measured = {side: [] for side in sides}
            for round_ in range(1, args.rounds + 1):
                for side in sides:  # interleaved: ours, theirs, ours, theirs …
                    label = f"{model}_{precision}_{side}_{round_}"
                    result = bc.run_child(commands[side], spec, workdir, label, threads)
                    measured[side].append(result)
                    print(f"{label}: {result['samples_per_sec']:.1f} samples/s "
                          f"({result['seconds_per_step']:.3f} s/step)", flush=True)
            ours, theirs = summarize(measured.get("ours", [])), summarize(measured.get("theirs", []))
            ratio = (ours["samples_per_sec_median"] / theirs["samples_per_sec_median"]
                     if ours and theirs else None)
            results.append({"model": model, "preset": spec["preset"], "precision": precision,
                            "steps": spec["steps"], "warmup_steps": spec["warmup_steps"],
                            "rounds": args.rounds, "ours": ours, "theirs": theirs,
                            "ratio_ours_over_theirs": ratio})

    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report = {
        "benchmark": "train_step_vs_hf",
        "machine": machine,
        "settings": {"batch_size": args.batch_size, "seq_len": args.seq_len, "vocab_size": args.vocab_size,
                     "all_tokens_real": True, "cpus": cpus, "threads": threads, "sides": sides,
                     "recipe": RECIPE, "tf_deterministic": args.tf_deterministic == "on",
                     "work_dir": str(workdir)},
        "results": results,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_step.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print()
    print(markdown(results))
    print(f"\nwrote {out / 'train_step.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
