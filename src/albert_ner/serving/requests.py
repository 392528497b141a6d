"""Request bodies → records, predictions → response bodies (no HTTP, no model: pure functions).

A request body holds one or more *records*. Each record is a text to tag, or — in the
line-based formats — a `BadRecord` that stands in the place of a line that could not be read,
so batch transform gets one output line per input line (an `{"error": ...}` line for a bad
one) instead of losing the whole request to one bad line.

  text/plain              one text per line (empty lines are empty texts)
  application/json        one document: {"text": "..."}, {"texts": [...]}, {"instances": [...]},
                          a list, or a string (list items: strings or {"text": "..."}); a bad
                          item fails the request (400). Several documents, one per line (what
                          batch transform's MultiRecord sends for ContentType application/json),
                          are read as JSON lines.
  application/jsonlines   one JSON string or {"text": "..."} per line (blank lines skipped)

Standard library only: `albert-ner export --tfs-package` ships a copy of this file beside the
TF Serving handlers (`serving.tfs_inference`), so it must not import the rest of the package.

Lines end at "\\n" only ("\\r\\n" is accepted), as batch transform's SplitType=Line splits them;
other Unicode line breaks stay inside a text.

Example:
  body = parse_body(b'{"text": "a"}\\n{oops\\n', JSONLINES)
  body.records          # ["a", BadRecord("line 2: not valid JSON: ...")]
  body.default_type     # "application/jsonlines"
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

JSON = "application/json"
JSONLINES = "application/jsonlines"
TEXT = "text/plain"
# Accepted spellings → the canonical type. SageMaker documents application/jsonlines; the
# others are common in clients and cost nothing to accept.
CONTENT_TYPES = {
    JSON: JSON,
    JSONLINES: JSONLINES,
    "application/x-jsonlines": JSONLINES,
    "application/jsonl": JSONLINES,
    TEXT: TEXT,
}
SUPPORTED_CONTENT_TYPES = ", ".join(CONTENT_TYPES)
RESPONSE_TYPES = {JSON: JSON, JSONLINES: JSONLINES, "application/x-jsonlines": JSONLINES,
                  "application/jsonl": JSONLINES}


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a one-line reason for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class BadRecord:
    """A line that holds no usable text; answered with {"error": message} in its place."""

    message: str


Record = str | BadRecord


@dataclass(frozen=True)
class ParsedBody:
    """The records of a request and the response format used when Accept does not choose."""

    records: list[Record]
    default_type: str

    @property
    def texts(self) -> list[str]:
        """The good records' texts, in order (what goes to the model)."""
        return [r for r in self.records if isinstance(r, str)]


def media_type(header: str | None) -> str:
    """`application/json; charset=utf-8` → `application/json` (lower case, no parameters)."""
    return (header or "").split(";", 1)[0].strip().lower()


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def text_of_item(item, where: str) -> str:
    """One input record: a string, or an object with a string "text" (TF Serving style).

    Raises:
        ValueError: naming `where` and what was found instead.
    """
    if isinstance(item, dict):
        if "text" not in item:
            keys = ", ".join(sorted(map(str, item))[:5]) or "none"
            raise ValueError(f'{where}: object has no "text" key (keys: {keys})')
        item = item["text"]
    if not isinstance(item, str):
        raise ValueError(f'{where}: expected a string or {{"text": "..."}}, got {_kind(item)}')
    try:
        item.encode("utf-8")  # JSON's "\\ud800" escapes decode to text no answer can hold
    except UnicodeEncodeError as err:
        raise ValueError(f"{where}: not valid Unicode (a lone surrogate at character {err.start})") from None
    return item


def _texts_from_json(value) -> list[str]:
    """The texts of one JSON document (the shapes in the module docstring)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text_of_item(item, f"item {i}") for i, item in enumerate(value)]
    if isinstance(value, dict):
        if "text" in value:
            return [text_of_item(value, '"text"')]
        for key in ("texts", "instances"):
            if key in value:
                items = value[key]
                if not isinstance(items, list):
                    raise ValueError(f'"{key}" must be a list, got {_kind(items)}')
                return [text_of_item(item, f"{key}[{i}]") for i, item in enumerate(items)]
        raise ValueError('JSON object needs a "text", "texts" or "instances" key')
    raise ValueError(f"expected a JSON object, list or string, got {_kind(value)}")


def split_lines(body: bytes) -> list[bytes]:
    """Lines of a body, split at "\\n" only; a final newline does not start another line."""
    lines = body.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def decode_line(line: bytes | str, number: int) -> str:
    """UTF-8 text of one line; a byte-order mark (Windows editors) on line 1 is dropped."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"line {number}: not UTF-8 ({err.reason} at byte {err.start})") from None
    return line.removeprefix("\ufeff") if number == 1 else line


def text_record(line: bytes | str, number: int) -> Record:
    """A text/plain line (1-based `number`) as a record: the line itself, or why not."""
    try:
        return decode_line(line, number)
    except ValueError as err:
        return BadRecord(str(err))


def jsonlines_record(line: bytes | str, number: int) -> Record | None:
    """A JSON-lines line as a record; None for a blank line (not a record)."""
    try:
        text = decode_line(line, number)
        if not text.strip():
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"line {number}: not valid JSON: {err}") from None
        return text_of_item(value, f"line {number}")
    except ValueError as err:
        return BadRecord(str(err))


def _records_of_lines(lines: Iterable[bytes], jsonlines: bool) -> list[Record]:
    records = []
    for number, line in enumerate(lines, 1):
        record = jsonlines_record(line, number) if jsonlines else text_record(line, number)
        if record is not None:
            records.append(record)
    return records


def parse_body(body: bytes, content_type: str) -> ParsedBody:
    """The records of a request body; `content_type` is canonical (a value of CONTENT_TYPES).

    Raises:
        RequestError: 400 when the body as a whole cannot be read (empty, or a single JSON
            document that is malformed or has a bad item).
    """
    if not body.strip():
        raise RequestError(400, "request body is empty; send at least one text")
    if content_type == TEXT:
        return ParsedBody(_records_of_lines(split_lines(body), jsonlines=False), JSONLINES)
    if content_type == JSONLINES:
        return ParsedBody(_records_of_lines(split_lines(body), jsonlines=True), JSONLINES)
    try:
        decoded = body.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise RequestError(400, f"request body is not UTF-8 ({err.reason} at byte {err.start})") from None
    try:
        value = json.loads(decoded)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data" and "\n" in decoded.strip():
            # A valid document followed by more: one document per line (batch transform).
            return ParsedBody(_records_of_lines(split_lines(body), jsonlines=True), JSONLINES)
        raise RequestError(400, f"request body is not valid JSON: {err}") from None
    try:
        return ParsedBody(list(_texts_from_json(value)), JSON)
    except ValueError as err:
        raise RequestError(400, str(err)) from None


def response_type(accept: str | None, default: str) -> str:
    """The response format: the first supported type in Accept, else `default`.

    Raises:
        RequestError: 406 when Accept names only types this server cannot write.
    """
    if not accept:
        return default
    for part in accept.split(","):
        media = media_type(part)
        if media in RESPONSE_TYPES:
            return RESPONSE_TYPES[media]
        if media in ("*/*", "application/*", ""):
            return default
    raise RequestError(406, f"cannot answer with {accept!r}; supported: {JSON}, {JSONLINES}")


def prediction_record(example) -> dict:
    """One predicted `Example` as {"text", "entities"}; entity fields from `Entity.to_json`."""
    return {"text": example.text, "entities": [e.to_json(example.text) for e in example.entities]}


def output_records(records: list[Record], examples: list) -> list[dict]:
    """Splices predictions (one per good record, in order) and error objects back in order."""
    predicted = iter(examples)
    out = [
        {"error": r.message} if isinstance(r, BadRecord) else prediction_record(next(predicted))
        for r in records
    ]
    if next(predicted, None) is not None:
        raise RuntimeError("more predictions than records")  # a bug, never the client's fault
    return out


def encode_records(records: list[dict], media: str) -> bytes:
    """Output records as one JSON document or as JSON lines (UTF-8, characters unescaped)."""
    if media == JSON:
        return json.dumps({"predictions": records}, ensure_ascii=False).encode("utf-8")
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
