"""Corpus writers, the inverse of `readers`: examples back to CoNLL or JSON lines.

Both formats round-trip: `read_conll(write_conll(x))` and `read_jsonl(write_jsonl(x))` give
back the same texts and entities.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from .example import Example
from .schemes import entities_to_tags

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
