"""What a run starts from: pretrained weights (or none), the vocabulary, the encoder config.

`train` and `pretrain` resolve these the same way, in this order:
  1. `--init-checkpoint` → a `Pretrained` (any layout `resolve_pretrained` knows), or None;
  2. the vocabulary: `--vocab-file`, else the checkpoint's, else built from the run's text;
  3. the encoder config: `--model-config` (preset or JSON), else the checkpoint's own.
The vocabulary size must match the config's; a mismatch is one clear error.
"""

from __future__ import annotations


def load_pretrained_and_vocab(init_checkpoint, checkpoint_layout, vocab_file, texts, log):
    """Steps 1 and 2: returns (Pretrained or None, Vocab).

    Args:
      init_checkpoint, checkpoint_layout, vocab_file: the run's options (None when unset).
      texts: the run's text, to build a vocabulary from when there is nothing else.
      log: print function for progress lines.
    """
    from albert_ner.text.vocab import Vocab

    pretrained = None
    if init_checkpoint:
        from albert_ner.checkpoints.pretrained import resolve_pretrained

        pretrained = resolve_pretrained(init_checkpoint, layout=checkpoint_layout)
    if vocab_file:
        vocab = Vocab.load(vocab_file)
    elif pretrained is not None:
        vocab = Vocab.load(pretrained.vocab_file)
    else:
        vocab = Vocab.build(texts)
        log(f"vocab: built from the text, {len(vocab)} entries")
    return pretrained, vocab


def resolve_encoder_config(model_config, pretrained, vocab):
    """Step 3: the EncoderConfig from `model_config`, else the checkpoint's; checks vocab size."""
    from albert_ner.model.config import EncoderConfig

    if model_config is None and pretrained is not None:
        config = pretrained.config
    else:
        if model_config is None:
            raise ValueError("--model-config is needed when there is no --init-checkpoint")
        config = EncoderConfig.resolve(model_config, vocab_size=len(vocab))
    if config.vocab_size != len(vocab):
        raise ValueError(
            f"the encoder config has vocab_size {config.vocab_size} but the "
            f"vocabulary has {len(vocab)} entries"
        )
    return config
