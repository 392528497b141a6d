"""`albert-ner`: the command line over the library. Each subcommand is a thin wrapper.

  albert-ner train     --train-file F [--dev-file F] --output-dir D [...]
  albert-ner evaluate  --model-dir D --data-file F [--json]
  albert-ner predict   --model-dir D [--input FILE] [--output FILE]
  albert-ner export    --model-dir D [--tfs-package OUT.tar.gz]
  albert-ner serve     --model-dir D [--host H] [--port P] [--workers N]
  albert-ner data stats|validate|convert ...
  albert-ner pretrain  --text-file F [--text-file F ...] --output-dir D [...]

Bad input ends with one `error: ...` line naming the file and line (exit status 2), never a
traceback; so does a full disk (naming the path and the bytes needed, exit status 1). Set
ALBERT_NER_DEBUG=1 to see the traceback anyway. A `train` or `pretrain` stopped by SIGTERM
writes a checkpoint, logs one line and exits with 143 (`train.interrupt`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys

from albert_ner import __version__

# TensorFlow's C++ log lines hide the output people should read. Level 3 leaves only FATAL:
# the ERROR lines TensorFlow logs while running are notes about fallbacks (e.g. "oneDNN
# supports DT_INT32 only on platforms with AVX-512. Falling back to ...") — a real failure
# raises a Python exception, which the CLI prints. A level the user set is kept; --verbose
# shows everything. The variable only governs messages logged after TensorFlow has set up
# its logging; see _import_tensorflow for the ones printed while its libraries load.
_USER_TF_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

DATA_FORMATS = ["auto", "conll", "json", "jsonl", "brat"]
DATA_FORMAT_HELP = ("corpus format: auto (detected from the content), conll (CHAR TAG lines, "
                    "BIO/BIOES/BMES), json (= jsonl: JSON lines, a JSON array or pretty-printed "
                    "objects of CLUENER, entities, doccano, Label Studio or Ground Truth records), "
                    "brat (NAME.txt + NAME.ann, or a directory of them)")
OVERLAPS_HELP = ("overlapping/nested spans, which flat tags cannot hold: outer keeps the longest of "
                 "each overlap, first keeps the first listed, error stops at the first one; "
                 "dropped spans are counted in a warning")

# Lines TensorFlow's native libraries print while they load, before their logging is set
# up: Abseil writes every message to stderr until absl::InitializeLog() runs, whatever
# TF_CPP_MIN_LOG_LEVEL says, e.g.
#   WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
#   I0000 00:00:1795942405.804942    6672 port.cc:153] oneDNN custom operations are on. ...
_ABSL_PREAMBLE = "All log messages before absl::InitializeLog() is called"
_NATIVE_LOG_LINE = re.compile(
    # absl: "I0000 00:00:1795942405.804942    6672 port.cc:153] ..." (before InitializeLog
    # the clock part is 00:00:<seconds since the epoch>)
    r"^(?:(?P<absl>[IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]"
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: (?P<tf>[IWEF]) \S+:\d+\])"  # older TF format
)
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}


def _import_tensorflow(verbose: bool) -> None:
    """Import TensorFlow with its native start-up log lines filtered by TF_CPP_MIN_LOG_LEVEL.

    The lines above are written by C++ code straight to file descriptor 2 while the shared
    libraries load, so neither the environment variable nor Python's sys.stderr can hold
    them back. The descriptor is pointed at a temporary file for the import; afterwards
    every captured line is passed on except native log lines below the level (and Abseil's
    preamble about InitializeLog). Anything else (a Python warning, an import error's
    output) still reaches the user. With `verbose`, everything is passed on.

    Args:
      verbose: pass every captured line on.
    """
    if "tensorflow" in sys.modules:
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode("utf-8", "replace").splitlines(keepends=True)
            level = 0 if verbose else int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") or 0)
            shown = lines if verbose else _filter_native_lines(lines, level)
            if shown:
                sys.stderr.write("".join(shown))
                sys.stderr.flush()


def _filter_native_lines(lines: list[str], level: int) -> list[str]:
    """Drop native log lines below `level` and Abseil's preamble; keep every other line.

    Args:
      lines: captured stderr lines.
      level: TF_CPP_MIN_LOG_LEVEL (0 INFO, 1 WARNING, 2 ERROR, 3 FATAL: that level and above shown).

    Returns:
      The lines to pass on. A line that is not a native log line is never dropped.
    """
    kept: list[str] = []
    for line in lines:
        match = _NATIVE_LOG_LINE.match(line)
        if match:
            if _SEVERITY[match.group("absl") or match.group("tf")] >= level:
                kept.append(line)
        elif not (level > 0 and _ABSL_PREAMBLE in line):
            kept.append(line)
    return kept


PRECISION_HELP = ("auto: mixed bf16 on a GPU of compute capability >= 8.0 or a CPU with AVX512-BF16/AMX-BF16, "
                  "fp16 on a 7.x GPU, else fp32 (and fp32 for the chars BiLSTM-CRF, which bf16 does not speed up); "
                  "the log's `precision:` line says what was picked and why. fp32, bf16 or fp16 force a precision")


def add_determinism_options(group) -> None:
    """--deterministic auto|on|off and its older spelling --no-deterministic (train and pretrain)."""
    group.add_argument("--deterministic", default="auto", choices=["auto", "on", "off"],
                       help="TensorFlow op determinism: bit-identical reruns and resumes. auto: on for CPU runs, "
                       "off when a GPU is visible (some GPU kernels have no deterministic version and raise)")
    # The older flag; SUPPRESS keeps it from overwriting --deterministic's default.
    group.add_argument("--no-deterministic", dest="deterministic", action="store_const", const="off",
                       default=argparse.SUPPRESS, help="same as --deterministic off (kept for older scripts)")


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
    d.add_argument("--train-file", required=True, help="training corpus (CoNLL BIO/BIOES/BMES, CLUENER, doccano, Label Studio, brat, Ground Truth; see --data-format)")
    d.add_argument("--dev-file", help="dev corpus for evaluation and best-model selection")
    d.add_argument("--data-format", default="auto", choices=DATA_FORMATS, help=DATA_FORMAT_HELP)
    d.add_argument("--source-scheme", default="auto", choices=["auto", "bio", "bioes", "bmes"], help="tag scheme of CoNLL input")
    d.add_argument("--overlaps", default="outer", choices=["outer", "first", "error"], help=OVERLAPS_HELP)
    d.add_argument("--max-train-sentences", type=int, help="use only the first N training sentences (quick runs)")
    m = p.add_argument_group("model")
    m.add_argument("--output-dir", required=True, help="model directory to write")
    m.add_argument("--model-config", help="preset (chars, tiny, base, bert-base, micro) or an albert_config/bert_config JSON file (default: the --init-checkpoint's config, else chars: the BiLSTM-CRF over character + bigram embeddings, the best recipe without downloaded weights)")
    m.add_argument("--init-checkpoint", help="pretrained checkpoint to start from (TF1 prefix, vendor directory or Hugging Face directory)")
    m.add_argument("--checkpoint-layout", choices=["brightmart", "google-albert", "google-bert", "hf-albert", "hf-bert"], help="layout of --init-checkpoint (default: detected from its variable names)")
    m.add_argument("--vocab-file", help="vocab.txt to use (default: the checkpoint's, else built from the training data)")
    m.add_argument("--head", default="crf", choices=["crf", "softmax"], help="tagging head; softmax reproduces the article's setup")
    m.add_argument("--tag-scheme", default="bio", choices=["bio", "bioes"], help="tag scheme the model predicts")
    m.add_argument("--max-seq-length", type=int, default=128, help="tokens per window incl. [CLS]/[SEP]; longer sentences are split into overlapping windows")
    m.add_argument("--classifier-dropout", type=float, help="dropout before the tag classifier (default 0.3 for the BiLSTM-CRF, else 0.1)")
    m.add_argument("--lstm-units", type=int, help="units per direction of a BiLSTM between encoder and classifier; 0 = none (default 128 for --model-config chars, else 0)")
    m.add_argument("--bigram-buckets", type=int, help="hash buckets of character-bigram embeddings; 0 = none (default 262144 for chars, else 0)")
    m.add_argument("--bigram-size", type=int, help="width of the character-bigram embeddings (default 64 for chars, else 0)")
    m.add_argument("--lexicon", help="dictionary-word features: a word-list file ('word', 'word<TAB>TYPE' or jieba's 'word freq tag' per line), 'jieba' for the jieba package's dictionary, several joined by commas (jieba,terms.tsv), or 'none' (default jieba for --model-config chars without --init-checkpoint, else none)")
    m.add_argument("--lexicon-max-len", type=int, default=8, help="longest dictionary word looked up, in characters")
    m.add_argument("--lexicon-profile", action=argparse.BooleanOptionalAction, default=None, help="also give each character its profile in the lexicon's words (how often it begins/ends words of each type), which carries over to names the lexicon lacks (default: on for small training sets, see the recipe)")
    m.add_argument("--augment-mentions", type=int, help="add N copies of the training set with each entity swapped for a --lexicon word of the same type and length (default: see the recipe)")
    m.add_argument("--ensemble", type=int, help="train N models side by side (own initial weights, own [UNK] and dropout masks) and average their scores: better on small sets, N times the training and prediction time (default: 6 for small training sets with the BiLSTM-CRF, else 1; see the recipe)")
    m.add_argument("--unk-dropout", type=float, help="share of training characters the model reads as [UNK], so that it learns names from context and the lexicon too (default: see the recipe)")
    t = p.add_argument_group("optimisation")
    steps = t.add_mutually_exclusive_group()
    steps.add_argument("--max-steps", type=int, help="train for exactly N steps")
    steps.add_argument("--epochs", type=float, help="train for N epochs (default 3; with --max-minutes alone: as many as fit)")
    t.add_argument("--max-minutes", type=float, help="wall-clock budget for the whole run: the learning-rate schedule is fitted to end with it, then the best model is evaluated and exported")
    t.add_argument("--batch-size", type=int, default=32, help="sentences (windows) per step")
    t.add_argument("--learning-rate", type=float, help="peak AdamW learning rate (default 5e-5 with --init-checkpoint, 6e-3 for the BiLSTM-CRF, 1e-3 for a transformer from random init)")
    t.add_argument("--crf-learning-rate", type=float, default=1e-2, help="peak learning rate of the CRF transitions")
    t.add_argument("--warmup-proportion", type=float, default=0.1, help="fraction of steps of linear warm-up")
    t.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (not on biases/LayerNorm)")
    t.add_argument("--clip-norm", type=float, default=1.0, help="global gradient-norm clipping (0 = off)")
    t.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"], help=PRECISION_HELP + "; the CRF always runs in float32")
    t.add_argument("--seed", type=int, default=42, help="seed for init, dropout and batch order")
    r = p.add_argument_group("evaluation and checkpoints")
    r.add_argument("--eval-every", type=int, default=500, help="evaluate on the dev set every N steps (and at the end)")
    r.add_argument("--log-every", type=int, default=50, help="print progress every N steps")
    r.add_argument("--checkpoint-every", type=int, help="write a resumable checkpoint every N steps (default: --eval-every)")
    r.add_argument("--checkpoint-dir", help="where checkpoints go (default OUTPUT_DIR/checkpoints)")
    r.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint-dir")
    r.add_argument("--no-export", dest="export", action="store_false", help="skip the SavedModel export at the end")
    add_determinism_options(r)


def _cmd_train(args) -> int:
    from albert_ner.train.loop import TrainArgs, run_training

    fields = {f.name for f in dataclasses.fields(TrainArgs)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    run_training(TrainArgs(**values))
    return 0


def _cmd_evaluate(args) -> int:
    from albert_ner.data.readers import read_corpus
    from albert_ner.predict import Predictor, evaluate
    from albert_ner.scoring import format_report

    corpus = read_corpus(args.data_file, format=args.data_format, overlaps=args.overlaps)
    message = corpus.repair_message()
    if message:
        print(f"warning: {message}", file=sys.stderr)
    predictor = Predictor.from_model_dir(args.model_dir)
    scores = evaluate(predictor, corpus.examples, progress=not args.json)
    if args.json:
        print(json.dumps(scores, ensure_ascii=False, indent=2))
    else:
        print(format_report(scores))
    return 0


def _cmd_predict(args) -> int:
    from albert_ner.data.writers import prediction_record
    from albert_ner.predict import Predictor
    from albert_ner.serving.batch import input_format_for, predict_lines

    input_format = input_format_for(args.input, args.input_format)
    source = open(args.input, "rb") if args.input else sys.stdin.buffer  # noqa: SIM115
    predictor = Predictor.from_model_dir(args.model_dir)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        # Streamed: a chunk of lines at a time, one output line per input record, a line
        # that cannot be read answered with {"error": ...} in its place.
        results = predict_lines(predictor, source, input_format, progress=True)
        for index, (record, example) in enumerate(results):
            if example is None:
                result = {"error": record.message}
            else:
                result = prediction_record(example, args.format, index=index)
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
    finally:
        if args.output:
            out.close()
        if args.input:
            source.close()
    return 0


def _cmd_serve(args) -> int:
    from albert_ner.serving.server import serve, settings_from_args

    return serve(settings_from_args(args))


def _cmd_export(args) -> int:
    from albert_ner.export import export_model_dir, write_tfs_package

    path = export_model_dir(args.model_dir)
    print(f"exported {path}")
    if args.tfs_package:
        package = write_tfs_package(args.model_dir, args.tfs_package)
        print(f"wrote {package} (TF Serving container: 1/ SavedModel + code/inference.py)")
    return 0


def _cmd_data(args) -> int:
    from albert_ner.data.readers import read_corpus

    corpus = read_corpus(args.file, format=args.data_format, scheme=args.source_scheme, overlaps=args.overlaps)
    warning = corpus.repair_message()
    if args.data_command == "stats":
        from albert_ner.data.stats import corpus_stats, format_stats

        stats = corpus_stats(corpus.examples, max_seq_length=args.max_seq_length, dropped=corpus.dropped)
        print(format_stats(stats))
    elif args.data_command == "validate":
        print(
            f"{args.file}: OK — {len(corpus.examples)} sentences, format {corpus.format}, "
            f"scheme {corpus.scheme or 'spans'}, types {', '.join(corpus.types) or '(none)'}"
        )
    elif args.data_command == "convert":
        from albert_ner.data.writers import write_corpus

        write_corpus(corpus.examples, args.output, to=args.to)
        print(f"wrote {len(corpus.examples)} sentences to {args.output} ({args.to})")
    if warning:
        print(f"warning: {warning}")
        if args.data_command == "validate" and args.strict:
            return 1
    return 0


def _cmd_pretrain(args) -> int:
    from albert_ner.pretrain.cli import cmd_pretrain

    return cmd_pretrain(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="albert-ner",
        description="Chinese NER with ALBERT/BERT + CRF on TensorFlow: train, evaluate, predict, export.",
    )
    parser.add_argument("--version", action="version", version=f"albert-ner {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train_parser(sub)
    from albert_ner.pretrain.cli import add_pretrain_parser

    add_pretrain_parser(sub)

    p = sub.add_parser("evaluate", help="score a model directory on a labelled file",
                       description="Entity-level P/R/F1 per type and micro (exact span and type), "
                       "plus the article's token-level macro eval_f.")
    p.add_argument("--model-dir", required=True, help="model directory written by `train`")
    p.add_argument("--data-file", required=True, help="labelled corpus to score on (full sentences)")
    p.add_argument("--data-format", default="auto", choices=DATA_FORMATS, help=DATA_FORMAT_HELP)
    p.add_argument("--overlaps", default="outer", choices=["outer", "first", "error"], help=OVERLAPS_HELP)
    p.add_argument("--json", action="store_true", help="print the scores as JSON (keys entity_f1, entity_precision, entity_recall, eval_f, per_type, ...)")

    p = sub.add_parser("predict", help="tag lines of text, write JSON lines",
                       description='Reads one text per line (from --input or stdin) and writes '
                       '{"text": ..., "entities": [{"type", "start", "end", "text", "score"}]} per line (end exclusive; score = the model probability of the entity).')
    p.add_argument("--model-dir", required=True, help="model directory written by `train`")
    p.add_argument("--input", help="UTF-8 file, one text (or JSON line) per line (default: stdin); read in chunks, any size")
    p.add_argument("--input-format", default="auto", choices=["auto", "text", "jsonl"],
                   help='text: one text per line; jsonl: a JSON string or {"text": ...} per line; auto: jsonl for '
                   '.jsonl/.jsonlines/.ndjson files, else text. A line that cannot be read gets {"error": ...} in its place')
    p.add_argument("--output", help="JSON lines file to write (default: stdout)")
    p.add_argument("--format", default="jsonl", choices=["jsonl", "cluener", "doccano"],
                   help='record shape: jsonl (as above), cluener (the CLUENER submission shape {"id", "text", '
                   '"label": {TYPE: {MENTION: [[start, end_inclusive]]}}}) or doccano ({"text", "label": '
                   '[[start, end, TYPE]]}, importable into doccano for pre-annotation)')

    from albert_ner.serving.server import add_serve_parser

    add_serve_parser(sub)

    p = sub.add_parser("export", help="(re-)export MODEL_DIR/1 from the saved weights",
                       description="Writes the TF Serving SavedModel (text and char-id signatures) from weights.npz; "
                       "with --tfs-package also a model.tar.gz for the SageMaker TensorFlow Serving container.")
    p.add_argument("--model-dir", required=True, help="model directory written by `train`")
    p.add_argument("--tfs-package", metavar="OUT.tar.gz",
                   help="also write a model.tar.gz for the SageMaker TF Serving container: "
                   "1/ (SavedModel), code/inference.py (handlers), code/labels.json")

    p = sub.add_parser("data", help="corpus tools: stats, validate, convert")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    for name, help_text in (
        ("stats", "sentences, characters, entities per type, length percentiles"),
        ("validate", "read the whole file and report the first error (file:line) or OK"),
        ("convert", "rewrite a corpus in another format or tag scheme (CoNLL, CLUENER, jsonl, doccano)"),
    ):
        q = dsub.add_parser(name, help=help_text, description=help_text)
        q.add_argument("file", help="corpus file")
        q.add_argument("--data-format", default="auto", choices=DATA_FORMATS, help=DATA_FORMAT_HELP)
        q.add_argument("--source-scheme", default="auto", choices=["auto", "bio", "bioes", "bmes"], help="tag scheme of CoNLL input")
        q.add_argument("--overlaps", default="outer", choices=["outer", "first", "error"], help=OVERLAPS_HELP)
        if name == "stats":
            q.add_argument("--max-seq-length", type=int, default=128, help="report sentences longer than this minus 2")
        if name == "validate":
            q.add_argument("--strict", action="store_true", help="exit 1 when tag sequences needed repair, overlapping spans were dropped or annotations left out")
        if name == "convert":
            q.add_argument("--to", required=True, choices=["conll", "bio", "bioes", "bmes", "jsonl", "cluener", "doccano"],
                           help="target: conll (= bio), bio/bioes/bmes (CoNLL in that tag scheme), jsonl "
                           '({"text", "entities"}), cluener or doccano (JSON lines)')
            q.add_argument("--output", required=True, help="file to write")

    # --verbose goes before or after the command: `albert-ner --verbose train ...` or
    # `albert-ner train ... --verbose`. SUPPRESS keeps a subcommand from resetting it.
    verbose_help = "also show TensorFlow's native start-up and INFO log lines"
    parser.add_argument("--verbose", action="store_true", help=verbose_help)
    for command_parser in [*sub.choices.values(), *dsub.choices.values()]:
        if "--verbose" not in command_parser._option_string_actions:
            command_parser.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose_help)
    return parser


COMMANDS = {
    "train": _cmd_train,
    "evaluate": _cmd_evaluate,
    "predict": _cmd_predict,
    "export": _cmd_export,
    "serve": _cmd_serve,
    "data": _cmd_data,
    "pretrain": _cmd_pretrain,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from albert_ner.data.errors import DataError
    from albert_ner.durable_io import DiskFullError
    from albert_ner.train.interrupt import INTERRUPTED_EXIT_STATUS, TrainingInterrupted

    verbose = bool(getattr(args, "verbose", False))
    if verbose and _USER_TF_LOG_LEVEL is None:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    try:
        if args.command != "data":  # every other command runs TensorFlow
            _import_tensorflow(verbose)
        return COMMANDS[args.command](args)
    except (DataError, ValueError, FileNotFoundError, UnicodeDecodeError) as err:
        if os.environ.get("ALBERT_NER_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except DiskFullError as err:  # not bad input, so not 2; the message says what to free
        if os.environ.get("ALBERT_NER_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
    except TrainingInterrupted:  # the loop has logged its line (with the checkpoint's path)
        return INTERRUPTED_EXIT_STATUS
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
