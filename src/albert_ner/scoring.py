"""Evaluation metrics: exact-match entity scores and the workshop's token-level `eval_f`.

Prediction (`albert_ner.predict`), `albert-ner evaluate`, the notebooks and training-time
evaluation all use these; the module sits below both training and serving (it needs only
`data.example`), so serving a model never imports the training package.

Two families of numbers are reported, and they answer different questions:

* **Entity level** (`entity_scores`), the standard NER metric (CoNLL, seqeval): an entity
  counts as correct only if its start, end and type all match a gold entity exactly.
  Precision, recall and F1 are micro-averaged over all entities, so frequent types weigh
  more. The numbers equal seqeval's for valid IOB2 tags.

* **Token level, macro** (`token_macro_scores`), the `eval_f` printed by the original
  workshop article, which computed it with `tf_metrics.{precision,recall,f1}(...,
  average="macro")` over the tag ids of the B-/I- tags. Every *character* is a sample and
  every non-"O" tag (B-PER, I-PER, B-LOC, ...) a class; per class, precision = characters
  correctly tagged with it / characters predicted with it, recall = ... / characters gold
  with it, F1 from those two. The three scores are then plain (unweighted) means over the
  classes. It differs from entity F1 because (a) a half-found entity still earns credit for
  its correct characters, (b) "O" characters, though never a class, still count as errors
  when a class is predicted on them or missed on them, and (c) every tag class counts the
  same however rare, so a rare type's I- tag can move the score as much as the most frequent
  B- tag. It is usually a few points higher than entity F1 and is kept only to compare with
  the article.

Division by zero gives 0.0 everywhere, as seqeval and tf_metrics do.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from albert_ner.data.example import Entity, Example


def _divide(numerator: float, denominator: float) -> float:
    """numerator / denominator, 0.0 when the denominator is 0."""
    return numerator / denominator if denominator else 0.0


def _prf(tp: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts.

    F1 is computed as 2PR / (P + R), the formula seqeval uses, rather than the equivalent
    2tp / (n_pred + n_gold), so both round identically.
    """
    precision = _divide(tp, n_pred)
    recall = _divide(tp, n_gold)
    return precision, recall, _divide(2 * precision * recall, precision + recall)


# ----------------------------------------------------------------------------- entity level


def entity_scores(gold: list[list[Entity]], pred: list[list[Entity]]) -> dict:
    """Exact-match entity precision, recall and F1 (micro) with a per-type breakdown.

    Args:
      gold: gold entities of each sentence.
      pred: predicted entities of each sentence, aligned with `gold`.

    Returns:
      {"entity_precision", "entity_recall", "entity_f1": float,
       "per_type": {type: {"precision", "recall", "f1": float, "support": int}}}
      with a per-type row for every type seen in gold or pred (sorted by name); support is
      the number of gold entities of that type. A duplicated entity counts once.
    """
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    tp, n_gold, n_pred = Counter(), Counter(), Counter()
    for gold_sent, pred_sent in zip(gold, pred):
        gold_set, pred_set = set(gold_sent), set(pred_sent)
        n_gold.update(e.type for e in gold_set)
        n_pred.update(e.type for e in pred_set)
        tp.update(e.type for e in gold_set & pred_set)

    per_type = {}
    for type_ in sorted(set(n_gold) | set(n_pred)):
        p, r, f = _prf(tp[type_], n_pred[type_], n_gold[type_])
        per_type[type_] = {"precision": p, "recall": r, "f1": f, "support": n_gold[type_]}
    p, r, f = _prf(sum(tp.values()), sum(n_pred.values()), sum(n_gold.values()))
    return {"entity_precision": p, "entity_recall": r, "entity_f1": f, "per_type": per_type}


# ----------------------------------------------------------------------------- token level


def token_macro_scores(
    gold_tags: list[list[str]],
    pred_tags: list[list[str]],
    labels: Iterable[str] | None = None,
) -> dict:
    """The article's token-level macro `eval_precision`, `eval_recall` and `eval_f`.

    Per class c (a tag other than "O"), over all characters of all sentences:
      precision_c = #(gold == c and pred == c) / #(pred == c)
      recall_c    = #(gold == c and pred == c) / #(gold == c)
      f1_c        = 2 precision_c recall_c / (precision_c + recall_c)
    (0.0 on zero division), then each score is the unweighted mean over the classes, which
    is what tf_metrics' `average="macro"` computes from the confusion matrix.

    Args:
      gold_tags: BIO tags of each sentence.
      pred_tags: predicted tags, same lengths as `gold_tags`.
      labels: the classes to average over. Default: every non-"O" tag present in gold or
        pred. tf_metrics averaged over a fixed label list, where a class absent from both
        sides scores 0 and lowers the mean; pass the full tag list to reproduce that.

    Returns:
      {"eval_precision", "eval_recall", "eval_f": float}; all 0.0 when there is no class.
    """
    if len(gold_tags) != len(pred_tags):
        raise ValueError(f"{len(gold_tags)} gold sentences but {len(pred_tags)} predicted")
    tp, n_gold, n_pred = Counter(), Counter(), Counter()
    for i, (gold_sent, pred_sent) in enumerate(zip(gold_tags, pred_tags)):
        if len(gold_sent) != len(pred_sent):
            raise ValueError(
                f"sentence {i}: {len(gold_sent)} gold tags but {len(pred_sent)} predicted"
            )
        for g, p in zip(gold_sent, pred_sent):
            n_gold[g] += 1
            n_pred[p] += 1
            if g == p:
                tp[g] += 1

    if labels is None:
        classes = sorted((set(n_gold) | set(n_pred)) - {"O"})
    else:
        classes = sorted(set(labels) - {"O"})
    if not classes:
        return {"eval_precision": 0.0, "eval_recall": 0.0, "eval_f": 0.0}
    per_class = [_prf(tp[c], n_pred[c], n_gold[c]) for c in classes]
    n = len(classes)
    return {
        "eval_precision": sum(p for p, _, _ in per_class) / n,
        "eval_recall": sum(r for _, r, _ in per_class) / n,
        "eval_f": sum(f for _, _, f in per_class) / n,
    }


# ----------------------------------------------------------------------------- both


def _bio_tags(length: int, entities: Iterable[Entity]) -> list[str]:
    """BIO (IOB2) tags of a sentence of `length` characters with the given spans.

    Kept local (instead of importing the data package's scheme converters) so that metrics
    depend only on the shared `Entity` type. Spans are assumed non-overlapping; a later span
    overwrites an earlier one where they overlap.
    """
    tags = ["O"] * length
    for e in sorted(entities):
        if not 0 <= e.start < e.end <= length:
            raise ValueError(f"entity {e} outside a sentence of length {length}")
        tags[e.start] = f"B-{e.type}"
        for i in range(e.start + 1, e.end):
            tags[i] = f"I-{e.type}"
    return tags


def evaluate_predictions(
    examples_gold: list[Example], examples_pred: list[Example], types: Sequence[str] = ()
) -> dict:
    """Entity-level and token-level scores of predicted examples against gold ones.

    Args:
      examples_gold: gold sentences.
      examples_pred: the same sentences (same order and lengths) with predicted entities.
      types: the entity types of the label set. Each gets a per_type row even when it
        never occurs (all zeros), so reports of different runs line up; rows of types seen
        only in the data follow. Does not change the token-level classes (see
        `token_macro_scores`).

    Returns:
      One flat dict: entity_precision, entity_recall, entity_f1, eval_precision,
      eval_recall, eval_f (floats) and per_type ({type: {precision, recall, f1, support}}).
    """
    if len(examples_gold) != len(examples_pred):
        raise ValueError(
            f"{len(examples_gold)} gold examples but {len(examples_pred)} predicted"
        )
    for g, p in zip(examples_gold, examples_pred):
        if len(g.text) != len(p.text):
            raise ValueError(f"{g.source or g.text!r}: gold and predicted texts differ in length")

    scores = entity_scores(
        [g.entities for g in examples_gold], [p.entities for p in examples_pred]
    )
    token = token_macro_scores(
        [_bio_tags(len(g.text), g.entities) for g in examples_gold],
        [_bio_tags(len(p.text), p.entities) for p in examples_pred],
    )
    empty = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    seen = scores.pop("per_type")
    per_type = {t: seen.get(t, dict(empty)) for t in types}
    per_type.update((t, row) for t, row in seen.items() if t not in per_type)
    return {**scores, **token, "per_type": per_type}


# ----------------------------------------------------------------------------- report


def format_report(scores: dict, digits: int = 4) -> str:
    """A seqeval `classification_report`-style table.

    Args:
      scores: output of `entity_scores` or `evaluate_predictions`.
      digits: decimals of the scores.

    Returns:
      One row per type, then "micro avg" (support = all gold entities); then, when `scores`
      has them, a line with the token-level macro eval_precision / eval_recall / eval_f.
    """
    per_type = scores.get("per_type", {})
    width = max([len(t) for t in per_type] + [len("micro avg"), digits])
    headers = ["precision", "recall", "f1-score", "support"]
    row_fmt = "{:>{width}s} " + " {:>9.{digits}f}" * 3 + " {:>9}\n"

    lines = ("{:>{width}s} " + " {:>9}" * len(headers)).format("", *headers, width=width)
    lines += "\n\n"
    for type_, row in per_type.items():
        lines += row_fmt.format(
            type_, row["precision"], row["recall"], row["f1"], row["support"],
            width=width, digits=digits,
        )
    lines += "\n"
    lines += row_fmt.format(
        "micro avg",
        scores["entity_precision"],
        scores["entity_recall"],
        scores["entity_f1"],
        sum(row["support"] for row in per_type.values()),
        width=width,
        digits=digits,
    )
    if "eval_f" in scores:
        lines += (
            f"\ntoken-level macro (article eval_f): precision {scores['eval_precision']:.{digits}f}"
            f"  recall {scores['eval_recall']:.{digits}f}  eval_f {scores['eval_f']:.{digits}f}\n"
        )
    return lines
