"""Evaluation metrics, kept importable from here for training code and older notebooks.

They live in `albert_ner.scoring`, below both training and serving; see that module.
"""

from albert_ner.scoring import (  # noqa: F401 — re-exported
    _bio_tags,
    entity_scores,
    evaluate_predictions,
    format_report,
    token_macro_scores,
)
