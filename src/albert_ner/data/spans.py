"""Checks shared by every span reader: offsets are integers inside the text, types are named."""

from __future__ import annotations

from .errors import DataError
from .example import Entity


def is_int(value: object) -> bool:
    """True for a JSON integer (`bool` is an `int` in Python but not an offset)."""
    return isinstance(value, int) and not isinstance(value, bool)


def make_entity(
    start: object, end: object, type_: object, text: str, name: str, lineno: int
) -> Entity:
    """An Entity from raw values, checking types and that 0 <= start < end <= len(text).

    Args:
      start, end: character offsets, end exclusive.
      type_: the entity type (a non-empty string).
      text: the sentence the offsets point into.
      name, lineno: file and 1-based line, for the error.

    Returns:
      Entity(start, end, type_).

    Raises:
      DataError: non-integer offsets, a missing type, or a span outside the text.
    """
    if not (is_int(start) and is_int(end)):
        raise DataError(
            name, lineno, f"entity offsets must be integers, got start={start!r} end={end!r}"
        )
    if not isinstance(type_, str) or not type_:
        raise DataError(name, lineno, f"entity [{start}, {end}) has no type/label")
    if not 0 <= start < end <= len(text):
        raise DataError(
            name, lineno,
            f"{type_} entity [{start}, {end}) is out of range for a text of length {len(text)}",
        )
    return Entity(start, end, type_)


def check_mention(ent: Entity, mention: object, text: str, name: str, lineno: int, note: str = "") -> None:
    """Raise DataError unless `mention` (the span text a tool stored) equals text[start:end].

    Args:
      ent: the span.
      mention: the text the file gives for it.
      text, name, lineno: the sentence, file and line.
      note: appended to the message, e.g. "(end offsets are exclusive)".
    """
    actual = text[ent.start : ent.end]
    if mention != actual:
        raise DataError(
            name, lineno,
            f"{ent.type} text {mention!r} does not match text[{ent.start}:{ent.end}] = {actual!r}"
            + (f" {note}" if note else ""),
        )
