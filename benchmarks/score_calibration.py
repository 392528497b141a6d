"""Are entity scores calibrated, sanity-wise? Precision of confident vs unsure predictions.

Predicts a labelled corpus with a model directory, splits the predicted entities at a score
threshold (default 0.9) and prints, for each side, how many there are and how many match a
gold entity exactly (span and type): the precision. A useful score has high precision above
the threshold and clearly lower precision below it. Also prints precision per score bucket.

Usage:
  python benchmarks/score_calibration.py --model-dir runs/msra --data-file ../shared/data/msra/dev.txt
  python benchmarks/score_calibration.py ... --json    # one JSON object instead of the table
"""

from __future__ import annotations

import argparse
import json
import sys
import time

BUCKETS = (0.0, 0.5, 0.7, 0.9, 0.99, 1.0)


def calibration(gold_examples, predicted_examples, threshold: float) -> dict:
    """Counts and precision of predicted entities above/below `threshold` and per bucket.

    Args:
      gold_examples: gold `Example`s.
      predicted_examples: the same sentences with predicted entities carrying `score`.
      threshold: scores >= threshold count as confident.

    Returns:
      {"threshold", "high": {"entities", "correct", "precision"}, "low": {...},
       "buckets": [{"range": [lo, hi], "entities", "correct", "precision"}], "mean_score"}.
    """
    rows = []  # (score, correct)
    for gold, pred in zip(gold_examples, predicted_examples):
        truth = set(gold.entities)
        for entity in pred.entities:
            if entity.score is None:
                raise ValueError("the model gives no entity scores; re-export it with `albert-ner export`")
            rows.append((entity.score, entity in truth))

    def summary(selected):
        correct = sum(ok for _, ok in selected)
        return {"entities": len(selected), "correct": correct,
                "precision": correct / len(selected) if selected else None}

    buckets = []
    for lo, hi in zip(BUCKETS[:-1], BUCKETS[1:]):
        inside = [r for r in rows if lo <= r[0] < hi or (hi == 1.0 and r[0] == 1.0)]
        buckets.append({"range": [lo, hi], **summary(inside)})
    return {
        "threshold": threshold,
        "high": summary([r for r in rows if r[0] >= threshold]),
        "low": summary([r for r in rows if r[0] < threshold]),
        "buckets": buckets,
        "mean_score": sum(s for s, _ in rows) / len(rows) if rows else None,
    }


def _fmt(value) -> str:
    return "   n/a" if value is None else f"{value:6.4f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True, help="model directory with an exported SavedModel")
    parser.add_argument("--data-file", required=True, help="labelled corpus (CoNLL or JSON lines)")
    parser.add_argument("--threshold", type=float, default=0.9, help="confident means score >= this")
    parser.add_argument("--max-sentences", type=int, help="use only the first N sentences")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    from albert_ner.data.readers import read_corpus
    from albert_ner.predict import Predictor

    gold = read_corpus(args.data_file).examples[: args.max_sentences]
    started = time.time()
    predicted = Predictor.from_model_dir(args.model_dir).predict([e.text for e in gold], progress=not args.json)
    result = calibration(gold, predicted, args.threshold)
    result.update(model_dir=args.model_dir, data_file=args.data_file, sentences=len(gold),
                  seconds=round(time.time() - started, 1))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.data_file}: {len(gold)} sentences, model {args.model_dir} ({result['seconds']}s)")
    for side, label in (("high", f"score >= {args.threshold}"), ("low", f"score <  {args.threshold}")):
        row = result[side]
        print(f"  {label}: {row['entities']:6d} entities, {row['correct']:6d} correct, precision {_fmt(row['precision'])}")
    print("  by score:")
    for row in result["buckets"]:
        lo, hi = row["range"]
        print(f"    [{lo:.2f}, {hi:.2f}{']' if hi == 1.0 else ')'}: {row['entities']:6d} entities, precision {_fmt(row['precision'])}")
    high, low = result["high"]["precision"], result["low"]["precision"]
    if high is not None and low is not None:
        verdict = "more" if high > low else "NOT more"
        print(f"verdict: entities with score >= {args.threshold} are {verdict} precise ({high:.4f} vs {low:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
