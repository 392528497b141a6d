"""Offline batch transform: a file of lines in, one result per line out, streamed in chunks.

`albert-ner predict` runs this: the same records as the server's line formats
(`serving.requests`: a text per line, or a JSON string / {"text": ...} per line), read a
chunk at a time so a file larger than memory works, with a bad line answered in its place
(`BadRecord`) instead of ending the run — what the server does for batch transform.

Example:
  with open("texts.txt", "rb") as fh:
      for record, example in predict_lines(predictor, fh, "text"):
          print(example.entities if example else record.message)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator

from albert_ner.serving.requests import BadRecord, Record, jsonlines_record, text_record

INPUT_FORMATS = ("text", "jsonl")
JSONL_SUFFIXES = (".jsonl", ".jsonlines", ".ndjson")
# Characters per model call of the stream; the predictor splits it into its own batches.
DEFAULT_CHUNK_CHARS = 32_768


def input_format_for(path: str | None, requested: str = "auto") -> str:
    """`requested`, or for "auto": jsonl for a .jsonl/.jsonlines/.ndjson file, else text."""
    if requested != "auto":
        if requested not in INPUT_FORMATS:
            raise ValueError(f"unknown input format {requested!r}; expected auto, text or jsonl")
        return requested
    return "jsonl" if path and path.lower().endswith(JSONL_SUFFIXES) else "text"


def read_records(lines: Iterable[bytes | str], input_format: str) -> Iterator[Record]:
    """One record per line ("\\n" ends a line; a final "\\r" is dropped); JSON lines skip blanks."""
    parse = jsonlines_record if input_format == "jsonl" else text_record
    for number, line in enumerate(lines, 1):
        line = line.removesuffix(b"\n" if isinstance(line, bytes) else "\n")
        line = line.removesuffix(b"\r" if isinstance(line, bytes) else "\r")
        record = parse(line, number)
        if record is not None:
            yield record


def predict_lines(
    predictor,
    lines: Iterable[bytes | str],
    input_format: str = "text",
    chunk_chars: int = DEFAULT_CHUNK_CHARS,
    progress: bool = False,
) -> Iterator[tuple[Record, object | None]]:
    """(record, Example) per input record in order; the Example is None for a `BadRecord`.

    Args:
        predictor: anything with `predict(texts) -> list[Example]` (a `Predictor`).
        lines: an open file (binary or text) or any iterable of lines.
        input_format: "text" (one text per line) or "jsonl".
        chunk_chars: characters read before each model call (memory stays bounded by this).
        progress: print "predicted N lines ..." to stderr after each chunk.
    """
    started = time.monotonic()
    done = errors = 0
    chunk: list[Record] = []
    size = 0

    def flush():
        nonlocal done, errors
        examples = iter(predictor.predict([r for r in chunk if isinstance(r, str)]))
        for record in chunk:
            yield record, None if isinstance(record, BadRecord) else next(examples)
        done += len(chunk)
        errors += sum(isinstance(r, BadRecord) for r in chunk)
        if progress:
            rate = done / max(time.monotonic() - started, 1e-9)
            print(f"  predicted {done} lines ({errors} unreadable), {rate:.1f} lines/s",
                  file=sys.stderr, flush=True)

    for record in read_records(lines, input_format):
        chunk.append(record)
        size += len(record) + 1 if isinstance(record, str) else 1
        if size >= chunk_chars:
            yield from flush()
            chunk, size = [], 0
    if chunk or (progress and done == 0):
        yield from flush()
