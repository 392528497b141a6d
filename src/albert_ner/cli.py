"""`albert-ner`: the command line over the library. Each subcommand is a thin wrapper.

  albert-ner train     --train-file F [--dev-file F] --output-dir D [...]
  albert-ner evaluate  --model-dir D --data-file F [--json]
  albert-ner predict   --model-dir D [--input FILE] [--output FILE]
  albert-ner export    --model-dir D
  albert-ner data stats|validate|convert ...

Bad input ends with one `error: ...` line naming the file and line (exit status 2), never a
traceback; set ALBERT_NER_DEBUG=1 to see the traceback anyway.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from albert_ner import __version__

# TensorFlow's C++ start-up chatter hides the output people should read.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _add_train_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a tagger; the output dir becomes a model directory",
        description="Train an ALBERT/BERT + CRF tagger. Evaluates on --dev-file every "
        "--eval-every steps (printing `eval_f = ...` lines and appending to metrics.jsonl), "
        "keeps the best model by dev entity F1, checkpoints for --resume, and exports a "
        "SavedModel to OUTPUT_DIR/1 at the end.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d = p.add_argument_group("data")
    d.add_argument("--train-file", required=True, help="training corpus (CoNLL BIO/BIOES/BMES, JSON lines, Ground Truth manifest)")
    d.add_argument("--dev-file", help="dev corpus for evaluation and best-model selection")
    d.add_argument("--data-format", default="auto", choices=["auto", "conll", "jsonl"], help="corpus format")
    d.add_argument("--source-scheme", default="auto", choices=["auto", "bio", "bioes", "bmes"], help="tag scheme of CoNLL input")
    d.add_argument("--max-train-sentences", type=int, help="use only the first N training sentences (quick runs)")
    m = p.add_argument_group("model")
    m.add_argument("--output-dir", required=True, help="model directory to write")
    m.add_argument("--model-config", help="preset (tiny, base, bert-base, micro) or an albert_config/bert_config JSON file (default: the --init-checkpoint's config, else tiny)")
    m.add_argument("--init-checkpoint", help="pretrained checkpoint to start from (TF1 prefix, vendor directory or Hugging Face directory)")
    m.add_argument("--checkpoint-layout", choices=["brightmart", "google-albert", "google-bert", "hf-albert", "hf-bert"], help="layout of --init-checkpoint (default: detected from its variable names)")
    m.add_argument("--vocab-file", help="vocab.txt to use (default: the checkpoint's, else built from the training data)")
    m.add_argument("--head", default="crf", choices=["crf", "softmax"], help="tagging head; softmax reproduces the article's setup")
    m.add_argument("--tag-scheme", default="bio", choices=["bio", "bioes"], help="tag scheme the model predicts")
    m.add_argument("--max-seq-length", type=int, default=128, help="tokens per window incl. [CLS]/[SEP]; longer sentences are split into overlapping windows")
    m.add_argument("--classifier-dropout", type=float, default=0.1, help="dropout before the tag classifier")
    t = p.add_argument_group("optimisation")
    steps = t.add_mutually_exclusive_group()
    steps.add_argument("--max-steps", type=int, help="train for exactly N steps")
    steps.add_argument("--epochs", type=float, default=3.0, help="train for N epochs (ignored with --max-steps)")
    t.add_argument("--batch-size", type=int, default=32, help="sentences (windows) per step")
    t.add_argument("--learning-rate", type=float, help="peak AdamW learning rate (default 1e-3 from random init, 5e-5 with --init-checkpoint)")
    t.add_argument("--crf-learning-rate", type=float, default=1e-2, help="peak learning rate of the CRF transitions")
    t.add_argument("--warmup-proportion", type=float, default=0.1, help="fraction of steps of linear warm-up")
    t.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (not on biases/LayerNorm)")
    t.add_argument("--clip-norm", type=float, default=1.0, help="global gradient-norm clipping (0 = off)")
    t.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="fp32, or mixed precision (bf16 on CPU/TPU/Ampere, fp16 on older GPUs); the CRF always runs in float32")
    t.add_argument("--seed", type=int, default=42, help="seed for init, dropout and batch order")
    r = p.add_argument_group("evaluation and checkpoints")
    r.add_argument("--eval-every", type=int, default=500, help="evaluate on the dev set every N steps (and at the end)")
    r.add_argument("--log-every", type=int, default=50, help="print progress every N steps")
    r.add_argument("--checkpoint-every", type=int, help="write a resumable checkpoint every N steps (default: --eval-every)")
    r.add_argument("--checkpoint-dir", help="where checkpoints go (default OUTPUT_DIR/checkpoints)")
    r.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint-dir")
    r.add_argument("--no-export", dest="export", action="store_false", help="skip the SavedModel export at the end")
    r.add_argument("--no-deterministic", dest="deterministic", action="store_false",
                   help="allow non-deterministic TF kernels (reruns and resumes are then not bit-identical)")


def _cmd_train(args) -> int:
    from albert_ner.train.loop import TrainArgs, run_training

    fields = {f.name for f in dataclasses.fields(TrainArgs)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    run_training(TrainArgs(**values))
    return 0


def _cmd_evaluate(args) -> int:
    from albert_ner.data.readers import read_corpus
    from albert_ner.predict import Predictor, evaluate
    from albert_ner.train.metrics import format_report

    corpus = read_corpus(args.data_file, format=args.data_format)
    predictor = Predictor.from_model_dir(args.model_dir)
    scores = evaluate(predictor, corpus.examples, progress=not args.json)
    if args.json:
        print(json.dumps(scores, ensure_ascii=False, indent=2))
    else:
        print(format_report(scores))
    return 0


def _cmd_predict(args) -> int:
    from albert_ner.predict import Predictor

    predictor = Predictor.from_model_dir(args.model_dir)
    if args.input:
        with open(args.input, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    else:
        lines = sys.stdin.read().splitlines()
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        for example in predictor.predict(lines):
            record = {"text": example.text, "entities": [e.to_json(example.text) for e in example.entities]}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        if args.output:
            out.close()
    return 0


def _cmd_export(args) -> int:
    from albert_ner.export import export_model_dir

    path = export_model_dir(args.model_dir)
    print(f"exported {path}")
    return 0


def _cmd_data(args) -> int:
    from albert_ner.data.readers import read_corpus

    corpus = read_corpus(args.file, format=args.data_format, scheme=args.source_scheme)
    if args.data_command == "stats":
        from albert_ner.data.stats import corpus_stats, format_stats

        print(format_stats(corpus_stats(corpus.examples, max_seq_length=args.max_seq_length)))
    elif args.data_command == "validate":
        print(
            f"{args.file}: OK — {len(corpus.examples)} sentences, format {corpus.format}, "
            f"scheme {corpus.scheme or 'spans'}, types {', '.join(corpus.types) or '(none)'}"
        )
        if corpus.repairs:
            print(f"warning: {corpus.repair_message()}")
            return 1 if args.strict else 0
    elif args.data_command == "convert":
        from albert_ner.data.writers import write_conll, write_jsonl

        if args.to == "jsonl":
            write_jsonl(corpus.examples, args.output)
        else:
            write_conll(corpus.examples, args.output, scheme=args.to)
        print(f"wrote {len(corpus.examples)} sentences to {args.output} ({args.to})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="albert-ner",
        description="Chinese NER with ALBERT/BERT + CRF on TensorFlow: train, evaluate, predict, export.",
    )
    parser.add_argument("--version", action="version", version=f"albert-ner {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train_parser(sub)

    p = sub.add_parser("evaluate", help="score a model directory on a labelled file",
                       description="Entity-level P/R/F1 per type and micro (exact span and type), "
                       "plus the article's token-level macro eval_f.")
    p.add_argument("--model-dir", required=True, help="model directory written by `train`")
    p.add_argument("--data-file", required=True, help="labelled corpus to score on (full sentences)")
    p.add_argument("--data-format", default="auto", choices=["auto", "conll", "jsonl"], help="corpus format")
    p.add_argument("--json", action="store_true", help="print the scores as JSON (keys entity_f1, entity_precision, entity_recall, eval_f, per_type, ...)")

    p = sub.add_parser("predict", help="tag lines of text, write JSON lines",
                       description='Reads one text per line (from --input or stdin) and writes '
                       '{"text": ..., "entities": [{"type", "start", "end", "text"}]} per line (end exclusive).')
    p.add_argument("--model-dir", required=True, help="model directory written by `train`")
    p.add_argument("--input", help="UTF-8 text file, one text per line (default: stdin)")
    p.add_argument("--output", help="JSON lines file to write (default: stdout)")

    p = sub.add_parser("export", help="(re-)export MODEL_DIR/1 from the saved weights",
                       description="Writes the TF Serving SavedModel (text and char-id signatures) from weights.npz.")
    p.add_argument("--model-dir", required=True, help="model directory written by `train`")

    p = sub.add_parser("data", help="corpus tools: stats, validate, convert")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    for name, help_text in (
        ("stats", "sentences, characters, entities per type, length percentiles"),
        ("validate", "read the whole file and report the first error (file:line) or OK"),
        ("convert", "rewrite a corpus in another format or tag scheme"),
    ):
        q = dsub.add_parser(name, help=help_text, description=help_text)
        q.add_argument("file", help="corpus file")
        q.add_argument("--data-format", default="auto", choices=["auto", "conll", "jsonl"], help="corpus format")
        q.add_argument("--source-scheme", default="auto", choices=["auto", "bio", "bioes", "bmes"], help="tag scheme of CoNLL input")
        if name == "stats":
            q.add_argument("--max-seq-length", type=int, default=128, help="report sentences longer than this minus 2")
        if name == "validate":
            q.add_argument("--strict", action="store_true", help="exit 1 when tag sequences needed repair")
        if name == "convert":
            q.add_argument("--to", required=True, choices=["bio", "bioes", "bmes", "jsonl"], help="target format / scheme")
            q.add_argument("--output", required=True, help="file to write")
    return parser


COMMANDS = {
    "train": _cmd_train,
    "evaluate": _cmd_evaluate,
    "predict": _cmd_predict,
    "export": _cmd_export,
    "data": _cmd_data,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from albert_ner.data.errors import DataError

    try:
        return COMMANDS[args.command](args)
    except (DataError, ValueError, FileNotFoundError, UnicodeDecodeError) as err:
        if os.environ.get("ALBERT_NER_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
