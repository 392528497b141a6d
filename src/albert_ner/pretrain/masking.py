"""Dynamic masking for the MLM objective (BERT's recipe), reproducible to the step.

For each sequence, 15 % of its characters (at least one, at most `max_predictions`) are
chosen; each chosen position becomes [MASK] with probability 0.8, a random ordinary token
with 0.1, and stays unchanged with 0.1. The model must predict the original id at every
chosen position. [CLS], [SEP] and padding are never chosen, and the random replacement never
draws a bracketed special token ([PAD] would change the attention mask, [CLS]/[SEP] the
framing).

Whole-word masking (`word_starts` given): the units chosen are words from a segmenter
(jieba), so all characters of "外务大臣" are masked together and the model cannot fill in a
character from its word-mates.

The masks of a sequence are a pure function of (seed, epoch, sequence index): each epoch
sees new masks ("dynamic masking", RoBERTa), and a resumed run re-creates exactly the masks
the interrupted one would have used.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

MASK_PROB, RANDOM_PROB = 0.8, 0.1  # the rest (0.1) keeps the original token
_TRAIN_STREAM, _HELDOUT_STREAM = 1, 2  # separate random streams for training and held-out masks


@dataclasses.dataclass(frozen=True)
class MaskingSpec:
    """What the masker needs to know about the vocabulary and the rate.

    Attributes:
      mask_id: id of [MASK].
      replace_ids: int32 ids a random replacement may draw (ordinary tokens only).
      rate: fraction of characters to predict.
      max_predictions: upper bound per sequence (sizes the gathered logits).
    """

    mask_id: int
    replace_ids: np.ndarray
    rate: float = 0.15
    max_predictions: int = 20

    @classmethod
    def from_vocab(cls, vocab, max_seq_length: int, rate: float = 0.15) -> "MaskingSpec":
        if "[MASK]" not in vocab:
            raise ValueError("the vocabulary has no [MASK] token, which masked-LM pretraining needs")
        if not 0.0 < rate < 1.0:
            raise ValueError(f"mask rate must be between 0 and 1, got {rate}")
        ordinary = [i for i, t in enumerate(vocab.tokens) if not (t.startswith("[") and t.endswith("]"))]
        if not ordinary:
            raise ValueError("the vocabulary holds only special tokens")
        max_predictions = max(1, math.ceil((max_seq_length - 2) * rate))
        return cls(vocab.token_to_id("[MASK]"), np.asarray(ordinary, np.int32), rate, max_predictions)


def _units(n: int, word_starts: np.ndarray | None) -> list[np.ndarray]:
    """Maskable units over positions 1..n of a framed sequence: characters or whole words."""
    positions = np.arange(1, n + 1)
    if word_starts is None:
        return [positions[i : i + 1] for i in range(n)]
    cuts = np.flatnonzero(word_starts[1:]) + 1  # a new word at these character offsets
    return np.split(positions, cuts)


def mask_sequence(
    input_ids: np.ndarray,
    spec: MaskingSpec,
    rng: np.random.Generator,
    word_starts: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks one framed sequence.

    Args:
      input_ids: int32 [n + 2], `[CLS] chars [SEP]` (no padding).
      spec: the masking spec.
      rng: the sequence's random generator (see `sequence_rng`).
      word_starts: bool [n], True where a word begins (whole-word masking), or None.
    Returns:
      (masked_ids [n + 2], positions [k] sorted, labels [k]): k ≤ spec.max_predictions.
    """
    n = len(input_ids) - 2
    wanted = min(spec.max_predictions, max(1, round(n * spec.rate)))
    units = _units(n, word_starts)
    chosen: list[int] = []
    for u in rng.permutation(len(units)):
        unit = units[u]
        if len(chosen) + len(unit) > wanted:
            continue  # BERT skips a word that would overshoot and tries the next one
        chosen.extend(unit.tolist())
        if len(chosen) == wanted:
            break
    if not chosen:  # every word is longer than the quota: take part of one
        chosen = units[int(rng.integers(len(units)))][:wanted].tolist()
    positions = np.sort(np.asarray(chosen, np.int32))
    labels = input_ids[positions].astype(np.int32)
    masked = input_ids.copy()
    draws = rng.random(len(positions))
    replace = spec.replace_ids[rng.integers(len(spec.replace_ids), size=len(positions))]
    masked[positions] = np.where(
        draws < MASK_PROB, spec.mask_id, np.where(draws < MASK_PROB + RANDOM_PROB, replace, labels)
    )
    return masked, positions, labels


def sequence_rng(seed: int, epoch: int | None, index: int) -> np.random.Generator:
    """The generator for sequence `index` in `epoch` (None: the fixed held-out masks)."""
    if epoch is None:
        return np.random.default_rng([seed, _HELDOUT_STREAM, index])
    return np.random.default_rng([seed, _TRAIN_STREAM, epoch, index])


def masked_batch(
    sequences: list[np.ndarray],
    indices: list[int],
    spec: MaskingSpec,
    seed: int,
    epoch: int | None,
    word_starts: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Masks and pads the sequences `indices` into one batch.

    Args:
      sequences: all framed id arrays of the dataset.
      indices: which of them form the batch.
      spec, seed, epoch: see `mask_sequence` and `sequence_rng`.
      word_starts: per sequence, the word-start flags (whole-word masking), or None.
    Returns:
      input_ids int32 [batch, seq] (masked, 0-padded), positions int32 [batch, P],
      label_ids int32 [batch, P], label_weights float32 [batch, P] (0 on padding).
    """
    rows = []
    for i in indices:
        starts = word_starts[i] if word_starts is not None else None
        rows.append(mask_sequence(sequences[i], spec, sequence_rng(seed, epoch, i), starts))
    seq = max(len(r[0]) for r in rows)
    preds = max(len(r[1]) for r in rows)
    input_ids = np.zeros((len(rows), seq), np.int32)
    positions = np.zeros((len(rows), preds), np.int32)
    labels = np.zeros((len(rows), preds), np.int32)
    weights = np.zeros((len(rows), preds), np.float32)
    for row, (masked, pos, lab) in enumerate(rows):
        input_ids[row, : len(masked)] = masked
        positions[row, : len(pos)] = pos
        labels[row, : len(lab)] = lab
        weights[row, : len(lab)] = 1.0
    return input_ids, positions, labels, weights


def word_start_flags(texts: list[str]) -> list[np.ndarray]:
    """Per text, bool [len(text)]: True where jieba starts a word (for whole-word masking).

    Raises:
      ValueError: jieba is not installed (it is the optional `pretrain` extra).
    """
    try:
        import jieba
    except ImportError:
        raise ValueError(
            "--whole-word-mask needs the jieba word segmenter: pip install 'albert-ner[pretrain]' "
            "(or pip install jieba)"
        ) from None
    import logging

    jieba.setLogLevel(logging.WARNING)  # no "Building prefix dict ..." chatter
    flags = []
    for text in texts:
        starts = np.zeros(len(text), bool)
        offset = 0
        for word in jieba.lcut(text):
            starts[offset] = True
            offset += len(word)
        if offset != len(text):  # never seen; fall back to characters rather than misalign
            starts[:] = True
        flags.append(starts)
    return flags
