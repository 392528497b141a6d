"""Length-bucketed batches for inference: whole sentences, a padded-character budget.

Prediction, evaluation and serving all batch this way; training has its own batching of
windows (`train.batching`). Sorting by length keeps padding low: MSRA sentences are 1–750
characters long, so a random batch would be mostly padding.
"""

from __future__ import annotations


def sentence_batches(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Indices for inference batches: sorted by length, at most max_tokens padded characters.

    Args:
      lengths: characters of each sentence.
      max_tokens: budget of batch rows × longest row (an empty sentence counts as 1); a
        sentence longer than the budget gets a batch of its own.

    Returns:
      Batches of sentence indices covering every index exactly once, shortest first.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, current = [], []
    for i in order:
        longest = max(lengths[i], 1)
        if current and longest * (len(current) + 1) > max_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches
