"""Long texts are never truncated: they are cut into overlapping windows and stitched back.

A model sees at most `window` characters at a time (its max sequence length minus [CLS] and
[SEP]; the caller does that subtraction). Windows start every `stride` characters and the last
one is pulled back so that it ends exactly at the end of the text, so no window is padded
with nothing and every character is seen at least once (`stride <= window`).

At prediction time each window yields per-character scores (e.g. CRF emission scores
[w, num_tags]); `merge_window_scores` averages them with triangular weights: a character
near the middle of a window has context on both sides, one at the edge has none on one side,
so the middle is trusted more. The merged [length, num_tags] scores are then decoded once over
the whole text, which gives one consistent tag path and no seams.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from albert_ner.data.example import Entity, Example


def _check_window(window: int, stride: int) -> None:
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if not 1 <= stride <= window:
        # stride > window would leave characters between two windows unseen.
        raise ValueError(f"stride must be in [1, window={window}], got {stride}")


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of the windows covering a text of `length` characters.

    Args:
      length: number of characters (>= 0).
      window: characters per window.
      stride: distance between consecutive starts, 1 <= stride <= window.

    Returns:
      [0] if length <= window; otherwise 0, stride, 2*stride, ... below length - window,
      then length - window, so the last window ends exactly at `length` (no duplicate start).
    """
    _check_window(window, stride)
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    if length <= window:
        return [0]
    last = length - window
    return list(range(0, last, stride)) + [last]


def window_weights(window: int) -> np.ndarray:
    """Triangular blending weights `min(i + 1, window - i)` for i in [0, window).

    Args:
      window: the window length (>= 1).

    Returns:
      float32 [window]; every weight is >= 1, so each covered position has a nonzero total.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    i = np.arange(window)
    return np.minimum(i + 1, window - i).astype(np.float32)


def merge_window_scores(
    length: int, starts: Sequence[int], window_scores: Sequence[np.ndarray]
) -> np.ndarray:
    """Weighted average of overlapping windows' per-character scores.

    Args:
      length: characters in the full text.
      starts: window start offsets (from `window_starts`).
      window_scores: one array [w_i, K] per start, w_i its window's actual length (the last
        or only window may be shorter than the nominal window). Weighted by
        `window_weights(w_i)`.

    Returns:
      float32 [length, K]: for each position, sum(weight * score) / sum(weight) over the
      windows that cover it.

    Raises:
      ValueError: mismatched counts or shapes, a window reaching past `length`, or a position
        no window covers.
    """
    if len(starts) != len(window_scores):
        raise ValueError(f"{len(starts)} starts but {len(window_scores)} score arrays")
    if not window_scores:
        raise ValueError("no windows to merge")
    num_classes = np.shape(window_scores[0])[-1]
    # Accumulate in float64: many windows of large logits would otherwise lose precision.
    total = np.zeros((length, num_classes), np.float64)
    weight_sum = np.zeros(length, np.float64)
    for start, scores in zip(starts, window_scores):
        scores = np.asarray(scores)
        if scores.ndim != 2 or scores.shape[1] != num_classes:
            raise ValueError(
                f"window at {start}: scores shape {scores.shape}, want [w, {num_classes}]"
            )
        end = start + scores.shape[0]
        if start < 0 or end > length:
            raise ValueError(f"window [{start}, {end}) is outside [0, {length})")
        weights = window_weights(scores.shape[0]) if scores.shape[0] else np.zeros(0, np.float32)
        total[start:end] += weights[:, None] * scores
        weight_sum[start:end] += weights
    uncovered = np.flatnonzero(weight_sum == 0)
    if uncovered.size:
        raise ValueError(f"position {int(uncovered[0])} is covered by no window")
    return (total / weight_sum[:, None]).astype(np.float32)


def _clip_entities(entities: Sequence[Entity], start: int, end: int) -> list[Entity]:
    """Entities overlapping [start, end), clipped to it and shifted to window offsets."""
    out = []
    for entity in entities:
        lo, hi = max(entity.start, start), min(entity.end, end)
        if lo < hi:
            out.append(Entity(lo - start, hi - start, entity.type))
    return out


def split_example(example: Example, window: int, stride: int) -> list[Example]:
    """Cuts a training example into window-sized examples.

    Entities inside a window keep their type and are shifted to window offsets. An entity cut
    by a window edge is *clipped* to its visible part rather than dropped: dropping it would
    label its visible characters O, i.e. teach the model that entity characters are not
    entities. The clipped span's inner tags are right (I inside, B at a true start); only
    the tag at the cut edge differs from the full-text tagging (B instead of I at a left cut,
    E instead of I at a right cut for BIOES). That is a small cost: with stride < window the
    entity is usually whole in a neighbouring window, and at prediction time edge positions
    get the lowest blending weight.

    Args:
      example: the sentence (entities as character spans over `example.text`).
      window: characters per window.
      stride: distance between window starts (see `window_starts`).

    Returns:
      [a copy of example] if it fits in one window; else one Example per window with
      `source` suffixed "#w0", "#w1", ... so errors still point back to the sentence.
    """
    starts = window_starts(len(example.text), window, stride)
    if len(starts) == 1:
        return [Example(example.text, list(example.entities), example.source)]
    pieces = []
    for index, start in enumerate(starts):
        end = start + window
        pieces.append(
            Example(
                text=example.text[start:end],
                entities=_clip_entities(example.entities, start, end),
                source=f"{example.source}#w{index}",
            )
        )
    return pieces
