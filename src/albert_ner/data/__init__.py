"""Corpus data: spans in, spans out.

Readers turn CoNLL (bio / bioes / bmes), JSON files (CLUENER, entities, doccano, Label Studio,
SageMaker Ground Truth; JSON lines, arrays or pretty-printed objects) and brat standoff into
`Example`s with `Entity` spans; `TagSet` maps spans to model tag ids and
back; writers, statistics and a synthetic corpus for tests complete the layer.
"""

from .errors import DataError
from .example import Entity, Example
from .readers import Corpus, read_brat, read_conll, read_corpus, read_json, read_jsonl
from .schemes import (
    MODEL_SCHEMES,
    SCHEMES,
    TagSet,
    detect_scheme,
    entities_to_tags,
    split_tag,
    tags_to_entities,
)
from .stats import corpus_stats, format_stats
from .synthetic import make_synthetic_corpus, write_synthetic_split
from .writers import (
    prediction_record,
    write_cluener,
    write_conll,
    write_corpus,
    write_doccano,
    write_jsonl,
)

__all__ = [
    "MODEL_SCHEMES",
    "SCHEMES",
    "Corpus",
    "DataError",
    "Entity",
    "Example",
    "TagSet",
    "corpus_stats",
    "detect_scheme",
    "entities_to_tags",
    "format_stats",
    "make_synthetic_corpus",
    "prediction_record",
    "read_brat",
    "read_conll",
    "read_corpus",
    "read_json",
    "read_jsonl",
    "split_tag",
    "tags_to_entities",
    "write_cluener",
    "write_conll",
    "write_corpus",
    "write_doccano",
    "write_jsonl",
    "write_synthetic_split",
]
