"""doccano sequence-labelling exports: JSON lines of {"text", "label": [[start, end, TYPE]]}.

doccano writes offsets as character positions with the end exclusive. Older versions call
the key "labels"; the relation-mode export uses "entities": [{"start_offset", "end_offset",
"label"}], which the entities reader accepts directly. Other keys (id, Comments, ...) are
ignored.
"""

from __future__ import annotations

from .errors import DataError
from .example import Entity
from .spans import make_entity


def doccano_spans(items: object, text: str, name: str, lineno: int) -> list[Entity]:
    """Spans of one doccano record's "label" (or "labels") list.

    Args:
      items: the list value, [[start, end_exclusive, "TYPE"], ...].
      text, name, lineno: the record's text, file and line.

    Returns:
      The spans in the order listed.

    Raises:
      DataError: an item is not [start, end, TYPE] or its offsets are out of range.
    """
    if not isinstance(items, list):
        raise DataError(name, lineno, "doccano 'label' must be a list of [start, end, TYPE]")
    spans = []
    for item in items:
        if not (isinstance(item, list) and len(item) == 3):
            raise DataError(
                name, lineno, f"doccano label {item!r} is not [start, end, TYPE] (end exclusive)"
            )
        spans.append(make_entity(item[0], item[1], item[2], text, name, lineno))
    return spans


def doccano_record(text: str, entities: list[Entity]) -> dict:
    """The doccano JSONL record for a sentence: {"text", "label": [[start, end, TYPE], ...]}."""
    return {"text": text, "label": [[e.start, e.end, e.type] for e in sorted(entities)]}
