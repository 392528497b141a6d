"""The three ways JSON records are laid out in a file, told apart by content, not by extension.

  JSON lines              one object per line (CLUENER, doccano, Ground Truth manifests)
  a JSON array            `[{...}, {...}]`, e.g. a Label Studio export
  concatenated objects    pretty-printed objects one after another, each over several lines

All three are read by one scanner that decodes value after value with
`json.JSONDecoder.raw_decode`, so each record keeps the line it starts on and an error
points at the exact line and column.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from .errors import DataError

ACCEPTED_LAYOUTS = "JSON lines, a JSON array of records, or concatenated JSON objects"
ACCEPTED_RECORDS = (
    'CLUENER {"text", "label": {TYPE: {MENTION: [[start, end_inclusive]]}}}, '
    'entities {"text", "entities": [{"type", "start", "end"}]}, '
    'doccano {"text", "label": [[start, end, TYPE]]}, '
    'Label Studio {"data": {"text"}, "annotations": [{"result": [...]}]}, '
    'Ground Truth {"source", JOB: {"annotations": {"entities": [...]}}}'
)
ACCEPTED_FORMATS = (
    f"accepted: {ACCEPTED_LAYOUTS} with records in one of the shapes {ACCEPTED_RECORDS}; "
    "CoNLL 'CHAR<TAB>TAG' lines; brat .txt + .ann"
)

_WHITESPACE = re.compile(r"[ \t\r\n]*")
_DECODER = json.JSONDecoder()


def first_value_is_json(text: str) -> bool:
    """True when the text starts (after blanks) with a complete JSON object or array.

    A CoNLL file whose first character is "{" or "[" ("{<TAB>O") fails this test.
    """
    pos = _WHITESPACE.match(text).end()
    if pos >= len(text) or text[pos] not in "[{":
        return False
    try:
        value, _ = _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError:
        return False
    return isinstance(value, (dict, list))


def iter_records(name: str, text: str) -> Iterator[tuple[int, dict]]:
    """Yield every record of a JSON file with the 1-based line it starts on.

    Args:
      name: the file, for messages.
      text: its content.

    Yields:
      (line, record) for each object, in file order.

    Raises:
      DataError: invalid JSON (with line and column), a record that is not an object, or
        anything else between records; the message lists the accepted layouts.
    """
    lines = _LineCounter(text)
    pos = _WHITESPACE.match(text).end()
    if pos >= len(text):
        return
    if text[pos] == "[":
        pos = _WHITESPACE.match(text, pos + 1).end()
        if text.startswith("]", pos):
            return _expect_end(name, text, pos + 1, lines)
        while True:
            value, end = _decode(name, text, pos, lines)
            yield lines.line(pos), _as_record(name, lines.line(pos), value)
            pos = _WHITESPACE.match(text, end).end()
            if text.startswith(",", pos):
                pos = _WHITESPACE.match(text, pos + 1).end()
            elif text.startswith("]", pos):
                return _expect_end(name, text, pos + 1, lines)
            else:
                raise DataError(
                    name, lines.line(pos),
                    f"expected ',' or ']' after a record of the JSON array, got "
                    f"{_peek(text, pos)}; {ACCEPTED_FORMATS}",
                )
    while pos < len(text):
        value, end = _decode(name, text, pos, lines)
        yield lines.line(pos), _as_record(name, lines.line(pos), value)
        pos = _WHITESPACE.match(text, end).end()


def _decode(name: str, text: str, pos: int, lines: "_LineCounter") -> tuple[object, int]:
    try:
        return _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError as err:
        start = lines.line(pos)
        line = err.lineno
        if not text[err.pos :].strip():  # point at the record that never closes, not at the end
            where, line = " (the file ends before this record is closed)", start
        elif err.lineno != start:
            where = f" in the record starting at line {start}"
        else:
            where = ""
        raise DataError(
            name, line,
            f"invalid JSON{where}: {err.msg} (column {err.colno}); {ACCEPTED_FORMATS}",
        ) from None


def _as_record(name: str, line: int, value: object) -> dict:
    if not isinstance(value, dict):
        raise DataError(
            name, line,
            f"expected a JSON object (one record), got {type(value).__name__}; {ACCEPTED_FORMATS}",
        )
    return value


def _expect_end(name: str, text: str, pos: int, lines: "_LineCounter") -> None:
    pos = _WHITESPACE.match(text, pos).end()
    if pos < len(text):
        raise DataError(
            name, lines.line(pos),
            f"unexpected {_peek(text, pos)} after the closing ']' of the JSON array; {ACCEPTED_FORMATS}",
        )


def _peek(text: str, pos: int) -> str:
    return repr(text[pos : pos + 20]) if pos < len(text) else "the end of the file"


class _LineCounter:
    """Maps increasing character offsets to 1-based line numbers in linear total time."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.lineno = 1

    def line(self, pos: int) -> int:
        if pos < self.pos:  # not expected (offsets only grow); recount from the start
            self.pos, self.lineno = 0, 1
        self.lineno += self.text.count("\n", self.pos, pos)
        self.pos = pos
        return self.lineno
