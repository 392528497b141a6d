"""Corpus statistics for `albert-ner data stats FILE`: sizes, entity counts, sentence lengths.

The length percentiles are what one needs to choose `max_seq_length`: how many sentences a
given length would have to split into windows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from .example import Example

PERCENTILES = (50, 90, 95, 99)


def corpus_stats(
    examples: Sequence[Example], max_seq_length: int = 128, dropped: Mapping[str, int] | None = None
) -> dict:
    """Count sentences, characters, entities and summarise sentence lengths.

    Args:
      examples: the corpus.
      max_seq_length: sentences with more characters than this are counted in
        "longer_than_max_seq_length" (the raw character count; the [CLS]/[SEP] positions a
        model adds are not included).
      dropped: entity type -> spans dropped as overlapping when the corpus was read
        (`Corpus.dropped`); the entity counts are of the spans kept.

    Returns:
      A dict with keys: sentences, characters, entities (type -> count, sorted by type),
      total_entities, sentences_with_entities, length (min, mean, p50, p90, p95, p99, max),
      max_seq_length, longer_than_max_seq_length, overlaps_dropped (type -> count, sorted).
    """
    lengths = np.array([len(ex.text) for ex in examples], dtype=np.int64)
    per_type = Counter(ent.type for ex in examples for ent in ex.entities)
    if lengths.size:
        length = {"min": int(lengths.min()), "mean": float(lengths.mean())}
        # "higher" keeps percentiles actual sentence lengths (integers) rather than interpolations.
        for q in PERCENTILES:
            length[f"p{q}"] = int(np.percentile(lengths, q, method="higher"))
        length["max"] = int(lengths.max())
    else:
        length = {"min": 0, "mean": 0.0, **{f"p{q}": 0 for q in PERCENTILES}, "max": 0}
    return {
        "sentences": int(lengths.size),
        "characters": int(lengths.sum()),
        "entities": dict(sorted(per_type.items())),
        "total_entities": int(sum(per_type.values())),
        "sentences_with_entities": sum(1 for ex in examples if ex.entities),
        "length": length,
        "max_seq_length": max_seq_length,
        "longer_than_max_seq_length": int((lengths > max_seq_length).sum()),
        "overlaps_dropped": dict(sorted((dropped or {}).items())),
    }


def format_stats(stats: dict, title: str | None = None) -> str:
    """Render `corpus_stats` output as an aligned two-column table.

    Args:
      stats: the dict from `corpus_stats`.
      title: optional first line, e.g. the file name.

    Returns:
      Multi-line text without a trailing newline.
    """
    n = stats["sentences"]
    rows: list[tuple[str, str]] = [
        ("sentences", f"{n:,}"),
        ("characters", f"{stats['characters']:,}"),
        ("sentences with entities", f"{stats['sentences_with_entities']:,}"),
        ("entities", f"{stats['total_entities']:,}"),
    ]
    for type_, count in stats["entities"].items():
        rows.append((f"  {type_}", f"{count:,}"))
    length = stats["length"]
    rows.append(("sentence length", ""))
    for key in ("min", "mean", "p50", "p90", "p95", "p99", "max"):
        value = length[key]
        rows.append((f"  {key}", f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"))
    longer = stats["longer_than_max_seq_length"]
    share = f" ({100 * longer / n:.1f}%)" if n else ""
    rows.append((f"longer than {stats['max_seq_length']} chars", f"{longer:,}{share}"))
    dropped = stats.get("overlaps_dropped") or {}
    if dropped:
        rows.append(("overlapping spans dropped", f"{sum(dropped.values()):,}"))
        for type_, count in dropped.items():
            rows.append((f"  {type_}", f"{count:,}"))

    label_width = max(len(label) for label, _ in rows)
    value_width = max(len(value) for _, value in rows)
    lines = [title] if title else []
    for label, value in rows:
        lines.append(f"{label:<{label_width}}  {value:>{value_width}}".rstrip())
    return "\n".join(lines)
