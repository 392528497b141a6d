"""Defaults that depend on what the run starts from: the training *recipe*.

A run that fine-tunes downloaded ALBERT/BERT weights wants the article's model (encoder +
CRF, small learning rate). A run with nothing downloaded is better served by the classic
Chinese NER model — character and character-bigram embeddings, a BiLSTM, a CRF — which
learns word boundaries in minutes where a transformer from random init needs hours
(measured in BENCHMARKS.md). Options the user sets are always kept; only unset ones (None)
are filled here, and `describe` says in one line what was chosen and why.
"""

from __future__ import annotations

from albert_ner.text.lexicon import jieba_installed

# The no-download default: the classic BiLSTM-CRF over character + bigram embeddings.
SCRATCH_MODEL_CONFIG = "chars"
SEQUENCE_DEFAULTS = {"lstm_units": 128, "bigram_buckets": 1 << 18, "bigram_size": 64}
SEQUENCE_LEARNING_RATE = 6e-3
SEQUENCE_DROPOUT = 0.3
# Dictionary-word features (model.lexicon) for the no-download recipe: jieba's dictionary.
SCRATCH_LEXICON = "jieba"
NO_LEXICON = "none"
# Share of training characters the BiLSTM-CRF reads as [UNK] (Tagger.unk_dropout), so that it
# learns names from context and the lexicon and not only by heart.
SEQUENCE_UNK_DROPOUT = 0.2
# A small labelled set (fewer sentences than SMALL_DATA_SENTENCES) is where names are least
# seen: more characters hidden, and the set copied with its entities swapped for lexicon
# words of the same type (data.augment). Measured on MSRA's first 1,500 sentences (BENCHMARKS.md).
SMALL_DATA_SENTENCES = 5000
SMALL_DATA_UNK_DROPOUT = 0.4
SMALL_DATA_AUGMENT_MENTIONS = 8
SMALL_DATA_LEXICON_PROFILE = True
# Models a small set's BiLSTM-CRF run trains side by side and averages (Tagger.members): each
# alone learns some names by chance, which the average cancels. A small set's model learns
# what it can in about 1,000 steps, so the members share a time budget at little loss.
SMALL_DATA_ENSEMBLE = 6
# A small set has few distinct character bigrams (MSRA's first 1,500 sentences: 32,571; all
# 42,000: 293,414), and every step's optimizer update touches the whole table: a quarter of
# the default table trained 1.5x faster at the same dev and test F1.
SMALL_DATA_BIGRAM_BUCKETS = 1 << 16

TRANSFORMER_SCRATCH_LEARNING_RATE = 1e-3  # a transformer trained from random init
PRETRAINED_LEARNING_RATE = 5e-5  # fine-tuning pretrained weights
TRANSFORMER_DROPOUT = 0.1


def missing_lexicon_note(args, pretrained: bool) -> str | None:
    """A log line when the scratch recipe had to leave out its lexicon, else None."""
    if pretrained or args.model_config != SCRATCH_MODEL_CONFIG or jieba_installed():
        return None
    return ("note: jieba is not installed, so the default lexicon (--lexicon jieba) is left out; "
            "pip install jieba (or give a script-mode job requirements=['jieba']) for better "
            "recall on unseen names")


def fill_defaults(args, pretrained: bool, model_type: str | None, stack: dict | None = None,
                  train_sentences: int | None = None) -> dict:
    """Values for the recipe options the user left unset (None) in `args` (a TrainArgs).

    Args:
      args: the run's TrainArgs.
      pretrained: whether --init-checkpoint is set.
      model_type: the encoder's model_type once resolved ("albert", "bert", "chars"), or
        None before the config is known (then only model_config is decided).
      stack: the checkpoint's BiLSTM/bigram options (`Pretrained.stack_options`), which win
        over the recipe's so that its pretrained layers fit; None or {} when it has none.
      train_sentences: size of the training set (None = not small).
    Returns:
      {field: value} for every recipe field that was None.
    """
    filled = {}
    if args.model_config is None and not pretrained:
        filled["model_config"] = SCRATCH_MODEL_CONFIG
    if args.lexicon is None:
        # Decided with the encoder (the vocabulary depends on it): the scratch recipe has
        # learned from little text and gains most from a dictionary; a pretrained encoder
        # is left as the checkpoint made it unless asked.
        # Without jieba installed (e.g. the stock TensorFlow training container in script mode),
        # the recipe runs without a lexicon; `missing_lexicon_note` says so in the log.
        scratch = not pretrained and filled.get("model_config", args.model_config) == SCRATCH_MODEL_CONFIG
        filled["lexicon"] = SCRATCH_LEXICON if scratch and jieba_installed() else NO_LEXICON
    small = train_sentences is not None and train_sentences < SMALL_DATA_SENTENCES
    lexicon = filled.get("lexicon", args.lexicon)
    if args.augment_mentions is None:
        filled["augment_mentions"] = SMALL_DATA_AUGMENT_MENTIONS if small and lexicon != NO_LEXICON else 0
    if args.lexicon_profile is None:
        filled["lexicon_profile"] = SMALL_DATA_LEXICON_PROFILE if small and lexicon != NO_LEXICON else False
    if model_type is None:
        return filled
    sequence_model = model_type == "chars"
    for name, value in SEQUENCE_DEFAULTS.items():
        if getattr(args, name) is None:
            if stack:
                filled[name] = stack[name]
            elif name == "bigram_buckets" and small and sequence_model:
                filled[name] = SMALL_DATA_BIGRAM_BUCKETS
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
    if args.unk_dropout is None:
        if sequence_model:
            filled["unk_dropout"] = SMALL_DATA_UNK_DROPOUT if small else SEQUENCE_UNK_DROPOUT
        else:
            filled["unk_dropout"] = 0.0
    if args.ensemble is None:
        filled["ensemble"] = SMALL_DATA_ENSEMBLE if small and sequence_model else 1
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
    if args.lexicon and args.lexicon != NO_LEXICON:
        parts.append(f"+ lexicon {args.lexicon} (words ≤ {args.lexicon_max_len})")
    if args.lexicon_profile and args.lexicon and args.lexicon != NO_LEXICON:
        parts.append("+ character profiles")
    if args.augment_mentions:
        parts.append(f"+ {args.augment_mentions} mention-replaced copies of the data")
    if args.unk_dropout:
        parts.append(f"+ [UNK] dropout {args.unk_dropout:g}")
    if args.lstm_units:
        parts.append(f"+ BiLSTM({args.lstm_units})")
    parts.append(f"+ {args.head.upper()}")
    if args.ensemble and args.ensemble > 1:
        parts.append(f"× {args.ensemble} (an ensemble: scores averaged)")
    return " ".join(parts)
