"""The `albert-ner pretrain` subcommand: its options and the call into `pretrain.loop`."""

from __future__ import annotations

import argparse
import dataclasses


def add_pretrain_parser(sub) -> None:
    """Adds `pretrain` to the `albert-ner` subparsers."""
    from albert_ner.cli import PRECISION_HELP, add_determinism_options  # shared with `train`

    p = sub.add_parser(
        "pretrain",
        help="masked-LM pretraining of the encoder on unlabelled text (domain adaptation)",
        description="Continue (or start) masked-language-model training of an ALBERT/BERT encoder "
        "(or, with --model-config chars, of the no-download model's character + bigram + BiLSTM "
        "stack) on unlabelled text: your own domain corpus, or the text side of a labelled corpus. Masks "
        "15% of the characters (80% [MASK], 10% random, 10% kept; new masks every epoch), "
        "evaluates MLM loss and accuracy on held-out lines (metrics.jsonl), checkpoints for "
        "--resume, and writes OUTPUT_DIR as an encoder directory for "
        "`albert-ner train --init-checkpoint OUTPUT_DIR`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d = p.add_argument_group("data")
    d.add_argument("--text-file", dest="text_files", action="append", required=True, metavar="PATH",
                   help="UTF-8 text (one document or sentence per line) or a labelled corpus "
                   "(CoNLL, JSON lines: its text is used); repeat for several; a directory means every file in it")
    d.add_argument("--text-format", default="auto", choices=["auto", "text", "corpus"],
                   help="plain text or labelled corpus (auto: detected per file)")
    d.add_argument("--max-lines", type=int, help="use only the first N lines (quick runs)")
    d.add_argument("--heldout-fraction", type=float, default=0.02, help="fraction of lines held out for MLM loss/accuracy (small corpora: at least min(50, 10%%) lines)")
    d.add_argument("--heldout-max", type=int, default=2000, help="at most this many held-out lines")
    m = p.add_argument_group("model")
    m.add_argument("--output-dir", required=True, help="encoder directory to write (takes `train --init-checkpoint`)")
    m.add_argument("--model-config", help="preset (tiny, base, bert-base, micro; chars = the no-download BiLSTM-CRF's character + bigram + BiLSTM stack) or an albert_config/bert_config JSON file (default: the --init-checkpoint's config, else tiny)")
    m.add_argument("--init-checkpoint", help="start from this checkpoint (anything `train --init-checkpoint` takes, or an earlier pretrain output); default: random init")
    m.add_argument("--checkpoint-layout", choices=["brightmart", "google-albert", "google-bert", "hf-albert", "hf-bert", "albert-ner"],
                   help="layout of --init-checkpoint (default: detected from its variable names)")
    m.add_argument("--lstm-units", type=int, help="BiLSTM units per direction above the encoder (default: the checkpoint's; 128 for --model-config chars, else none)")
    m.add_argument("--bigram-buckets", type=int, help="hashed character-bigram table size (default: the checkpoint's; 262144 for chars, else none)")
    m.add_argument("--bigram-size", type=int, help="bigram embedding width (default: the checkpoint's; 64 for chars, else none)")
    m.add_argument("--vocab-file", help="vocab.txt to use (default: the checkpoint's, else built from the text)")
    m.add_argument("--max-seq-length", type=int, default=128, help="tokens per sequence incl. [CLS]/[SEP]; longer lines are cut at sentence ends")
    m.add_argument("--whole-word-mask", action="store_true", help="mask whole words from the jieba segmenter (pip install 'albert-ner[pretrain]')")
    m.add_argument("--mask-rate", type=float, default=0.15, help="fraction of characters to predict")
    t = p.add_argument_group("optimisation")
    steps = t.add_mutually_exclusive_group()
    steps.add_argument("--max-steps", type=int, help="train for at most N steps")
    steps.add_argument("--epochs", type=float, help="train for N epochs (default 3, or as many as fit in --max-minutes)")
    t.add_argument("--max-minutes", type=float, help="time budget: the schedule is fitted to end with it, then the encoder is written")
    t.add_argument("--batch-size", type=int, default=32, help="sequences per step")
    t.add_argument("--learning-rate", type=float, help="peak AdamW learning rate (default 1e-3 from random init, 1e-4 from a checkpoint)")
    t.add_argument("--warmup-proportion", type=float, default=0.1, help="fraction of steps of linear warm-up")
    t.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (not on biases/LayerNorm)")
    t.add_argument("--clip-norm", type=float, default=1.0, help="global gradient-norm clipping (0 = off)")
    t.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"], help=PRECISION_HELP)
    t.add_argument("--seed", type=int, default=42, help="seed for init, batch order, masks and the held-out split")
    r = p.add_argument_group("evaluation and checkpoints")
    r.add_argument("--eval-every", type=int, default=500, help="evaluate on the held-out lines every N steps (and at the end)")
    r.add_argument("--log-every", type=int, default=50, help="print progress every N steps")
    r.add_argument("--checkpoint-every", type=int, help="write a resumable checkpoint every N steps (default: --eval-every)")
    r.add_argument("--checkpoint-dir", help="where checkpoints go (default OUTPUT_DIR/checkpoints)")
    r.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint-dir")
    add_determinism_options(r)


def cmd_pretrain(args) -> int:
    from albert_ner.pretrain.loop import PretrainArgs, run_pretraining

    fields = {f.name for f in dataclasses.fields(PretrainArgs)}
    run_pretraining(PretrainArgs(**{k: v for k, v in vars(args).items() if k in fields}))
    return 0
