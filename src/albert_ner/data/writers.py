"""Corpus writers, the inverse of `readers`: examples back to CoNLL or a span format.

  conll / bio, bioes, bmes   `write_conll`, one `CHAR<TAB>TAG` per line
  jsonl                      `write_jsonl`, {"text", "entities": [{"type", "start", "end", "text"}]}
  cluener                    `write_cluener`, {"text", "label": {TYPE: {MENTION: [[s, e_incl]]}}}
  doccano                    `write_doccano`, {"text", "label": [[s, e, TYPE]]}

Every writer round-trips through `read_corpus` (same texts and entities) for what its format
can hold: CoNLL cannot hold a newline, tab or carriage return in a text, nor an empty text.
`prediction_record` gives one predicted sentence in the jsonl, cluener or doccano shape.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from .doccano import doccano_record
from .example import Example
from .schemes import entities_to_tags

# `albert-ner data convert --to` targets: "conll" is BIO; the schemes name other CoNLL tags.
CONVERT_FORMATS = ("conll", "bio", "bioes", "bmes", "jsonl", "cluener", "doccano")
PREDICTION_FORMATS = ("jsonl", "cluener", "doccano")

# Characters that would break the one-character-per-line layout of a CoNLL file.
_UNWRITABLE_IN_CONLL = {"\n", "\r", "\t"}


def write_conll(examples: Iterable[Example], path: str | os.PathLike, scheme: str = "bio") -> Path:
    """Write examples as `CHAR<TAB>TAG` lines with a blank line after each sentence.

    Args:
      examples: sentences with non-overlapping entities.
      path: output file (parent directories are created).
      scheme: "bio", "bioes" or "bmes".

    Returns:
      The path written.

    Raises:
      ValueError: a text contains a newline or tab (cannot be one CoNLL line), or an entity
        is invalid for its sentence.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for ex in examples:
            bad = _UNWRITABLE_IN_CONLL.intersection(ex.text)
            if bad:
                where = ex.source or repr(ex.text[:30])
                raise ValueError(f"{where}: text contains {sorted(bad)!r}, which CoNLL cannot hold")
            tags = entities_to_tags(len(ex.text), ex.entities, scheme)
            out.writelines(f"{char}\t{tag}\n" for char, tag in zip(ex.text, tags))
            out.write("\n")
    return path


def write_jsonl(examples: Iterable[Example], path: str | os.PathLike) -> Path:
    """Write examples in the entities JSON-lines format (end exclusive, mention text included).

    Each line looks like
    {"text": "...", "entities": [{"type": "PER", "start": 0, "end": 3, "text": "..."}]}.

    Args:
      examples: the sentences.
      path: output file (parent directories are created).

    Returns:
      The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for ex in examples:
            record = {
                "text": ex.text,
                "entities": [ent.to_json(ex.text) for ent in sorted(ex.entities)],
            }
            # ensure_ascii=False keeps the Chinese readable in the file.
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def write_cluener(examples: Iterable[Example], path: str | os.PathLike) -> Path:
    """Write examples as CLUENER JSON lines (end offsets inclusive, mentions as keys).

    Args:
      examples: the sentences (non-overlapping entities).
      path: output file (parent directories are created).

    Returns:
      The path written.
    """
    return _write_records((cluener_record(ex) for ex in examples), path)


def write_doccano(examples: Iterable[Example], path: str | os.PathLike) -> Path:
    """Write examples as doccano JSON lines {"text", "label": [[start, end, TYPE]]} (end exclusive).

    doccano imports this file as a sequence-labelling dataset (e.g. for pre-annotation).
    """
    return _write_records((doccano_record(ex.text, ex.entities) for ex in examples), path)


def write_corpus(examples: Iterable[Example], path: str | os.PathLike, to: str) -> Path:
    """Write examples in any of CONVERT_FORMATS.

    Args:
      examples: the sentences.
      path: output file.
      to: "conll" (BIO), "bio", "bioes", "bmes", "jsonl", "cluener" or "doccano".

    Returns:
      The path written.

    Raises:
      ValueError: unknown `to`, or a text the format cannot hold.
    """
    if to == "jsonl":
        return write_jsonl(examples, path)
    if to == "cluener":
        return write_cluener(examples, path)
    if to == "doccano":
        return write_doccano(examples, path)
    if to in ("conll", "bio", "bioes", "bmes"):
        return write_conll(examples, path, scheme="bio" if to == "conll" else to)
    raise ValueError(f"unknown output format {to!r}; expected one of {', '.join(CONVERT_FORMATS)}")


def cluener_record(example: Example) -> dict:
    """{"text", "label": {TYPE: {MENTION: [[start, end_inclusive], ...]}}} for one sentence."""
    label: dict[str, dict[str, list[list[int]]]] = {}
    for ent in sorted(example.entities, key=lambda e: (e.type, e.start, e.end)):
        mention = example.text[ent.start : ent.end]
        label.setdefault(ent.type, {}).setdefault(mention, []).append([ent.start, ent.end - 1])
    return {"text": example.text, "label": label}


def prediction_record(example: Example, fmt: str = "jsonl", index: int | None = None) -> dict:
    """One predicted sentence as a JSON-ready dict in the shape a user asked for.

    Args:
      example: the text with its predicted entities.
      fmt: "jsonl" ({"text", "entities": [{"type", "start", "end", "text", ...}]}, end
        exclusive; extra entity fields such as a score are kept), "cluener" (the CLUENER
        submission shape {"id", "text", "label": {TYPE: {MENTION: [[s, e_inclusive]]}}}) or
        "doccano" ({"text", "label": [[start, end, TYPE]]}, importable for pre-annotation).
      index: the 0-based input line; becomes "id" in the cluener shape.

    Returns:
      The record.

    Raises:
      ValueError: unknown `fmt`.
    """
    if fmt == "jsonl":
        return {"text": example.text, "entities": [e.to_json(example.text) for e in example.entities]}
    if fmt == "cluener":
        record = cluener_record(example)
        return record if index is None else {"id": index, **record}
    if fmt == "doccano":
        return doccano_record(example.text, example.entities)
    raise ValueError(f"unknown prediction format {fmt!r}; expected one of {', '.join(PREDICTION_FORMATS)}")


def _write_records(records: Iterable[dict], path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for record in records:
            # ensure_ascii=False keeps the Chinese readable in the file.
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path
