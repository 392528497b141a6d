"""Tests of the evaluation metrics, against seqeval and hand-computed values."""

from __future__ import annotations

import random

import numpy as np
import pytest
from seqeval.metrics import (
    classification_report,
    f1_score,
    precision_score,
    recall_score,
)
from seqeval.scheme import IOB2

from albert_ner.data.example import Entity, Example
from albert_ner.train.metrics import (
    _bio_tags,
    entity_scores,
    evaluate_predictions,
    format_report,
    token_macro_scores,
)

GOLD_TYPES = ["PER", "LOC", "ORG"]
PRED_ONLY_TYPE = "MISC"  # never in gold: must still get a per-type row


# ----------------------------------------------------------------------------- generators


def random_spans(rng: random.Random, length: int, types: list[str]) -> list[Entity]:
    """Random non-overlapping spans over a sentence of `length` characters."""
    spans, pos = [], 0
    while pos < length:
        if rng.random() < 0.35:
            end = min(length, pos + rng.randint(1, 4))
            spans.append(Entity(pos, end, rng.choice(types)))
            pos = end
        else:
            pos += 1
    return spans


def perturb(rng: random.Random, length: int, gold: list[Entity]) -> list[Entity]:
    """A plausible prediction: keep, drop, retype or reshape gold spans, or invent new ones."""
    mode = rng.random()
    if mode < 0.1:
        return []  # empty prediction
    if mode < 0.2:
        return random_spans(rng, length, GOLD_TYPES + [PRED_ONLY_TYPE])
    pred = []
    for e in gold:
        r = rng.random()
        if r < 0.55:
            pred.append(e)
        elif r < 0.7:
            pred.append(Entity(e.start, e.end, rng.choice(GOLD_TYPES + [PRED_ONLY_TYPE])))
        elif r < 0.85 and e.end - e.start > 1:
            pred.append(Entity(e.start + 1, e.end, e.type))
        # else: dropped
    return pred


def random_corpus(seed: int):
    rng = random.Random(seed)
    gold, pred, lengths = [], [], []
    for _ in range(rng.randint(1, 8)):
        n = rng.randint(0, 12)
        g = random_spans(rng, n, GOLD_TYPES)
        gold.append(g)
        pred.append(perturb(rng, n, g))
        lengths.append(n)
    return gold, pred, lengths


# ----------------------------------------------------------------------------- seqeval


def seqeval_report(y_true, y_pred, strict: bool) -> dict:
    kwargs = {"mode": "strict", "scheme": IOB2} if strict else {}
    return classification_report(y_true, y_pred, output_dict=True, zero_division=0, **kwargs)


@pytest.mark.parametrize("strict", [False, True], ids=["default", "strict-IOB2"])
def test_entity_scores_agree_with_seqeval(strict):
    kwargs = {"mode": "strict", "scheme": IOB2} if strict else {}
    checked_pred_only = False
    for seed in range(300):
        gold, pred, lengths = random_corpus(seed)
        y_true = [_bio_tags(n, g) for n, g in zip(lengths, gold)]
        y_pred = [_bio_tags(n, p) for n, p in zip(lengths, pred)]
        ours = entity_scores(gold, pred)

        expected = (
            precision_score(y_true, y_pred, zero_division=0, **kwargs),
            recall_score(y_true, y_pred, zero_division=0, **kwargs),
            f1_score(y_true, y_pred, zero_division=0, **kwargs),
        )
        got = (ours["entity_precision"], ours["entity_recall"], ours["entity_f1"])
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)

        if not ours["per_type"]:
            continue  # no entity on either side: seqeval has no per-type rows either
        report = seqeval_report(y_true, y_pred, strict)
        types = {k for k in report if not k.endswith(" avg")}
        assert set(ours["per_type"]) == types
        for t, row in ours["per_type"].items():
            ref = report[t]
            np.testing.assert_allclose(
                [row["precision"], row["recall"], row["f1"]],
                [ref["precision"], ref["recall"], ref["f1-score"]],
                rtol=0,
                atol=1e-9,
            )
            assert row["support"] == ref["support"]
        checked_pred_only |= ours["per_type"].get(PRED_ONLY_TYPE, {}).get("support", 1) == 0
    assert checked_pred_only  # the generator did produce types present only in pred


def test_entity_scores_hand_case():
    gold = [[Entity(0, 2, "PER"), Entity(3, 4, "LOC")], []]
    pred = [[Entity(0, 2, "PER"), Entity(3, 5, "LOC")], [Entity(1, 2, "ORG")]]
    s = entity_scores(gold, pred)
    assert s["entity_precision"] == pytest.approx(1 / 3)
    assert s["entity_recall"] == pytest.approx(1 / 2)
    assert s["entity_f1"] == pytest.approx(0.4)
    assert s["per_type"]["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert s["per_type"]["LOC"]["f1"] == 0.0 and s["per_type"]["LOC"]["support"] == 1
    assert s["per_type"]["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_entity_scores_zero_division():
    empty = entity_scores([[], []], [[], []])
    assert empty == {
        "entity_precision": 0.0,
        "entity_recall": 0.0,
        "entity_f1": 0.0,
        "per_type": {},
    }
    no_pred = entity_scores([[Entity(0, 1, "PER")]], [[]])
    assert (no_pred["entity_precision"], no_pred["entity_recall"], no_pred["entity_f1"]) == (
        0.0,
        0.0,
        0.0,
    )
    no_gold = entity_scores([[]], [[Entity(0, 1, "PER")]])
    assert no_gold["per_type"]["PER"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 0,
    }
    with pytest.raises(ValueError):
        entity_scores([[]], [])


# ----------------------------------------------------------------------------- token macro


def test_token_macro_hand_case():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "O", "O", "B-PER"]]
    # Classes B-PER, I-PER, B-LOC:
    #   B-PER: tp 1, predicted 2, gold 1 -> P 1/2, R 1, F 2/3
    #   I-PER: tp 0, predicted 0, gold 1 -> 0, 0, 0
    #   B-LOC: tp 0, predicted 0, gold 1 -> 0, 0, 0
    s = token_macro_scores(gold, pred)
    assert s["eval_precision"] == pytest.approx((1 / 2) / 3)
    assert s["eval_recall"] == pytest.approx(1 / 3)
    assert s["eval_f"] == pytest.approx((2 / 3) / 3)
    # The same prediction finds no entity exactly: entity F1 is 0 while eval_f is not.
    e = entity_scores(
        [[Entity(0, 2, "PER"), Entity(3, 4, "LOC")]],
        [[Entity(0, 1, "PER"), Entity(3, 4, "PER")]],
    )
    assert e["entity_f1"] == 0.0
    # A fixed label list including a class absent on both sides lowers the means.
    fixed = token_macro_scores(gold, pred, labels=["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
    assert fixed["eval_precision"] == pytest.approx((1 / 2) / 4)
    assert fixed["eval_f"] == pytest.approx((2 / 3) / 4)


def tf_metrics_macro(gold_tags, pred_tags):
    """Reference: confusion matrix + per-class P/R/F1 averaged, as tf_metrics' macro does."""
    labels = sorted({t for s in gold_tags + pred_tags for t in s})
    index = {t: i for i, t in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)))  # rows gold, columns predicted
    for g_sent, p_sent in zip(gold_tags, pred_tags):
        for g, p in zip(g_sent, p_sent):
            cm[index[g], index[p]] += 1
    ps, rs, fs = [], [], []
    for t in labels:
        if t == "O":
            continue
        i = index[t]
        p = cm[i, i] / cm[:, i].sum() if cm[:, i].sum() else 0.0
        r = cm[i, i] / cm[i, :].sum() if cm[i, :].sum() else 0.0
        ps.append(p)
        rs.append(r)
        fs.append(2 * p * r / (p + r) if p + r else 0.0)
    if not ps:
        return 0.0, 0.0, 0.0
    return np.mean(ps), np.mean(rs), np.mean(fs)


def test_token_macro_matches_confusion_matrix_reference():
    for seed in range(100):
        gold, pred, lengths = random_corpus(seed)
        y_true = [_bio_tags(n, g) for n, g in zip(lengths, gold)]
        y_pred = [_bio_tags(n, p) for n, p in zip(lengths, pred)]
        s = token_macro_scores(y_true, y_pred)
        np.testing.assert_allclose(
            [s["eval_precision"], s["eval_recall"], s["eval_f"]],
            tf_metrics_macro(y_true, y_pred),
            rtol=0,
            atol=1e-12,
        )


def test_token_macro_zero_division_and_errors():
    zero = {"eval_precision": 0.0, "eval_recall": 0.0, "eval_f": 0.0}
    assert token_macro_scores([], []) == zero
    assert token_macro_scores([["O", "O"]], [["O", "O"]]) == zero
    assert token_macro_scores([["B-PER"]], [["O"]]) == zero
    assert token_macro_scores([["O"]], [["B-PER"]]) == zero
    with pytest.raises(ValueError):
        token_macro_scores([["O"]], [["O", "O"]])


# ----------------------------------------------------------------------------- combined


def test_evaluate_predictions_combines_both():
    gold = [
        Example("张三在北京", [Entity(0, 2, "PER"), Entity(3, 5, "LOC")], "a:1"),
        Example("无", [], "a:3"),
    ]
    pred = [
        Example("张三在北京", [Entity(0, 2, "PER"), Entity(3, 5, "ORG")]),
        Example("无", []),
    ]
    s = evaluate_predictions(gold, pred, types=["LOC", "PER", "ORG", "GPE"])
    assert set(s) == {
        "entity_precision",
        "entity_recall",
        "entity_f1",
        "eval_precision",
        "eval_recall",
        "eval_f",
        "per_type",
    }
    assert list(s["per_type"]) == ["LOC", "PER", "ORG", "GPE"]
    assert s["per_type"]["GPE"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert s["entity_f1"] == pytest.approx(0.5)
    # Token classes B-PER, I-PER (perfect), B-LOC, I-LOC (missed), B-ORG, I-ORG (wrong):
    assert s["eval_f"] == pytest.approx(2 / 6)
    with pytest.raises(ValueError):
        evaluate_predictions(gold, pred[:1], types=[])
    with pytest.raises(ValueError):
        evaluate_predictions(gold[:1], [Example("张三", [])], types=[])


def test_bio_helper():
    tags = _bio_tags(6, [Entity(3, 6, "LOC"), Entity(0, 1, "PER")])
    assert tags == ["B-PER", "O", "O", "B-LOC", "I-LOC", "I-LOC"]
    with pytest.raises(ValueError):
        _bio_tags(2, [Entity(1, 3, "PER")])


def test_format_report_lists_every_type():
    gold, pred, lengths = random_corpus(3)
    gold_ex = [Example("x" * n, g) for n, g in zip(lengths, gold)]
    pred_ex = [Example("x" * n, p) for n, p in zip(lengths, pred)]
    scores = evaluate_predictions(gold_ex, pred_ex, types=GOLD_TYPES + ["VERY_LONG_TYPE"])
    report = format_report(scores)
    for t in scores["per_type"]:
        assert t in report
    for word in ("precision", "recall", "f1-score", "support", "micro avg", "eval_f"):
        assert word in report
    total = sum(row["support"] for row in scores["per_type"].values())
    micro = [line for line in report.splitlines() if "micro avg" in line][0]
    assert micro.split()[-1] == str(total)
    assert f"{scores['entity_f1']:.4f}" in micro
    # Entity-only scores (no eval_* keys) are accepted too.
    assert "micro avg" in format_report(entity_scores([[]], [[]]))
