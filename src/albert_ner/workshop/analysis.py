"""Entity-level error analysis: what kind of mistake each predicted or missed entity is.

Exact-match entity F1 counts every mistake the same. Here each predicted entity of a sentence
is put in one class, and each gold entity that no prediction touches is "missed":

  correct                  same start, end and type as a gold entity
  wrong_type               same start and end as a gold entity, other type
  wrong_boundary           overlaps a gold entity of the same type, boundaries differ
  wrong_boundary_and_type  overlaps only gold entities of other types, boundaries differ
  spurious                 overlaps no gold entity
  missed                   (gold) overlapped by no predicted entity

Chinese boundaries are the hard part (no spaces, no capitals), so "wrong_boundary" is where
a model's remaining errors usually are.

Example:
  kinds = classify_sentence(gold.entities, pred.entities)
  frame = error_counts(gold_examples, pred_examples)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from albert_ner.data.example import Entity, Example

ERROR_KINDS = ("correct", "wrong_type", "wrong_boundary", "wrong_boundary_and_type", "spurious", "missed")
NONE = "(none)"


def _overlaps(a: Entity, b: Entity) -> bool:
    return a.start < b.end and b.start < a.end


def classify_sentence(gold: Sequence[Entity], pred: Sequence[Entity]) -> list[tuple[str, Entity | None, Entity | None]]:
    """(kind, gold entity or None, predicted entity or None) for one sentence.

    For a wrong_boundary(_and_type) prediction the gold entity is the first overlapping one.
    """
    gold, pred = sorted(set(gold)), sorted(set(pred))
    by_span = {(g.start, g.end): g for g in gold}
    out, touched = [], set()
    for p in pred:
        overlapping = [g for g in gold if _overlaps(g, p)]
        touched.update(overlapping)
        same_span = by_span.get((p.start, p.end))
        if same_span is not None:
            out.append(("correct" if same_span.type == p.type else "wrong_type", same_span, p))
        elif any(g.type == p.type for g in overlapping):
            out.append(("wrong_boundary", next(g for g in overlapping if g.type == p.type), p))
        elif overlapping:
            out.append(("wrong_boundary_and_type", overlapping[0], p))
        else:
            out.append(("spurious", None, p))
    out.extend(("missed", g, None) for g in gold if g not in touched)
    return out


def _pairs(gold_examples: Sequence[Example], pred_examples: Sequence[Example]):
    if len(gold_examples) != len(pred_examples):
        raise ValueError(f"{len(gold_examples)} gold sentences but {len(pred_examples)} predicted")
    return zip(gold_examples, pred_examples)


def error_counts(gold_examples: Sequence[Example], pred_examples: Sequence[Example]):
    """Table: rows = entity type (gold type, or predicted type for spurious), columns = kinds."""
    import pandas as pd

    counts: Counter = Counter()
    for g, p in _pairs(gold_examples, pred_examples):
        for kind, ge, pe in classify_sentence(g.entities, p.entities):
            counts[((ge or pe).type, kind)] += 1
    types = sorted({t for t, _ in counts})
    frame = pd.DataFrame([[counts[(t, k)] for k in ERROR_KINDS] for t in types], index=types, columns=list(ERROR_KINDS))
    frame.loc["all"] = frame.sum()
    return frame


def type_confusion(gold_examples: Sequence[Example], pred_examples: Sequence[Example]):
    """Confusion between types on exactly matching spans.

    Rows: gold type, or "(none)" for predicted spans that match no gold span; columns:
    predicted type, or "(none)" for gold spans no prediction matches exactly. The diagonal
    is the correct entities; off-diagonal type cells are `wrong_type`; the "(none)" row and
    column hold the boundary errors, spurious and missed entities.
    """
    import pandas as pd

    counts: Counter = Counter()
    for g, p in _pairs(gold_examples, pred_examples):
        gold_spans = {(e.start, e.end): e.type for e in set(g.entities)}
        pred_spans = {(e.start, e.end): e.type for e in set(p.entities)}
        for span, t in gold_spans.items():
            counts[(t, pred_spans.get(span, NONE))] += 1
        for span, t in pred_spans.items():
            if span not in gold_spans:
                counts[(NONE, t)] += 1
    types = sorted({t for pair in counts for t in pair} - {NONE})
    labels = types + [NONE]
    return pd.DataFrame(
        [[counts[(r, c)] for c in labels] for r in labels],
        index=pd.Index(labels, name="gold"), columns=pd.Index(labels, name="predicted"),
    )


def worst_sentences(gold_examples: Sequence[Example], pred_examples: Sequence[Example], n: int = 5) -> list[dict]:
    """The n sentences with the most errors (ties: shorter first, then corpus order).

    Returns:
      [{"index", "errors", "kinds": {kind: count}, "gold": Example, "pred": Example}].
    """
    scored = []
    for i, (g, p) in enumerate(_pairs(gold_examples, pred_examples)):
        kinds = Counter(k for k, _, _ in classify_sentence(g.entities, p.entities) if k != "correct")
        errors = sum(kinds.values())
        if errors:
            scored.append({"index": i, "errors": errors, "kinds": dict(kinds), "gold": g, "pred": p})
    scored.sort(key=lambda r: (-r["errors"], len(r["gold"].text), r["index"]))
    return scored[:n]


def worst_sentences_html(worst: list[dict]) -> str:
    """Gold above predicted for each of `worst_sentences`' rows."""
    from albert_ner.workshop.display import compare_html

    blocks = []
    for row in worst:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(row["kinds"].items()))
        blocks.append(compare_html(row["gold"], row["pred"], f"#{row['index']}: {row['errors']} errors ({kinds})"))
    return "\n".join(blocks)
