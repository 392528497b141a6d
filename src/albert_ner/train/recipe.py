"""Defaults that depend on what the run starts from: the training *recipe*.

A run that fine-tunes downloaded ALBERT/BERT weights wants the article's model (encoder +
CRF, small learning rate). A run with nothing downloaded is better served by the classic
Chinese NER model — character and character-bigram embeddings, a BiLSTM, a CRF — which
learns word boundaries in minutes where a transformer from random init needs hours
(measured in BENCHMARKS.md). Options the user sets are always kept; only unset ones (None)
are filled here, and `describe` says in one line what was chosen and why.
"""

from __future__ import annotations

# The no-download default: the classic BiLSTM-CRF over character + bigram embeddings.
SCRATCH_MODEL_CONFIG = "chars"
SEQUENCE_DEFAULTS = {"lstm_units": 128, "bigram_buckets": 1 << 18, "bigram_size": 64}
SEQUENCE_LEARNING_RATE = 6e-3
SEQUENCE_DROPOUT = 0.3

TRANSFORMER_SCRATCH_LEARNING_RATE = 1e-3  # a transformer trained from random init
PRETRAINED_LEARNING_RATE = 5e-5  # fine-tuning pretrained weights
TRANSFORMER_DROPOUT = 0.1


def fill_defaults(args, pretrained: bool, model_type: str | None, stack: dict | None = None) -> dict:
    """Values for the recipe options the user left unset (None) in `args` (a TrainArgs).

    Args:
      args: the run's TrainArgs.
      pretrained: whether --init-checkpoint is set.
      model_type: the encoder's model_type once resolved ("albert", "bert", "chars"), or
        None before the config is known (then only model_config is decided).
      stack: the checkpoint's BiLSTM/bigram options (`Pretrained.stack_options`), which win
        over the recipe's so that its pretrained layers fit; None or {} when it has none.
    Returns:
      {field: value} for every recipe field that was None.
    """
    filled = {}
    if args.model_config is None and not pretrained:
        filled["model_config"] = SCRATCH_MODEL_CONFIG
    if model_type is None:
        return filled
    sequence_model = model_type == "chars"
    for name, value in SEQUENCE_DEFAULTS.items():
        if getattr(args, name) is None:
            if stack:
                filled[name] = stack[name]
            else:
                filled[name] = value if sequence_model else 0
    if args.learning_rate is None:
        # A pretrained BiLSTM stack is still small and shallow: it fine-tunes at its own rate,
        # not at the 5e-5 meant for large pretrained transformers.
        if sequence_model:
            filled["learning_rate"] = SEQUENCE_LEARNING_RATE
        elif pretrained:
            filled["learning_rate"] = PRETRAINED_LEARNING_RATE
        else:
            filled["learning_rate"] = TRANSFORMER_SCRATCH_LEARNING_RATE
    if args.classifier_dropout is None:
        filled["classifier_dropout"] = SEQUENCE_DROPOUT if sequence_model else TRANSFORMER_DROPOUT
    return filled


def describe(args, pretrained: bool) -> str:
    """One line naming the recipe a (filled-in) TrainArgs describes."""
    parts = []
    if pretrained:
        parts.append(f"fine-tune {args.init_checkpoint}")
    encoder = args.model_config or "the checkpoint's encoder"
    parts.append("character embeddings" if encoder == SCRATCH_MODEL_CONFIG else f"encoder {encoder}")
    if args.bigram_buckets:
        parts.append(f"+ bigrams ({args.bigram_buckets}×{args.bigram_size})")
    if args.lstm_units:
        parts.append(f"+ BiLSTM({args.lstm_units})")
    parts.append(f"+ {args.head.upper()}")
    return " ".join(parts)
