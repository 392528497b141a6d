"""Label Studio exports: the JSON export (a list of tasks) and the JSON-MIN export.

JSON export, one task:
  {"id": 1, "data": {"text": "..."},
   "annotations": [{"result": [{"type": "labels", "from_name": ..., "to_name": ...,
                                "value": {"start": 0, "end": 2, "text": "张三",
                                          "labels": ["PER"]}}, ...],
                    "was_cancelled": false, "created_at": "...", "updated_at": "..."}],
   "predictions": [...]}
JSON-MIN export, one task: {"text": "...", "label": [{"start", "end", "text", "labels"}], ...}

Offsets are end exclusive. A task may carry several annotations (annotators, revisions): the
latest non-cancelled one (by updated_at, else created_at, else position) is used. A task with
no such annotation is not labelled yet and is skipped; results that are not text spans
(relations, choices, ...) are ignored. Both are counted for the reader's warning.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from .errors import DataError
from .example import Entity
from .spans import make_entity

UNLABELLED = "Label Studio tasks without a non-cancelled annotation (skipped)"


def is_task(obj: dict) -> bool:
    """True for a record of the Label Studio JSON export (its text sits under "data")."""
    return isinstance(obj.get("data"), dict) and any(
        key in obj for key in ("annotations", "completions", "predictions")
    )


def task_spans(
    obj: dict, name: str, lineno: int, skipped: Counter
) -> tuple[str, list[Entity]] | None:
    """The text and spans of one exported task, or None for a task nobody labelled.

    Args:
      obj: the task.
      name, lineno: file and line where the task starts, for messages.
      skipped: counts of what was left out on purpose, updated in place.

    Returns:
      (text, spans in the order listed) or None.

    Raises:
      DataError: no text in "data", a malformed annotation, offsets out of range, or a
        value.text that does not match the text at its offsets.
    """
    text = _task_text(obj["data"], name, lineno)
    # "completions" is what Label Studio before 1.0 called annotations.
    annotations = obj.get("annotations", obj.get("completions")) or []
    if not isinstance(annotations, list):
        raise DataError(name, lineno, "Label Studio 'annotations' must be a list")
    chosen = _latest_annotation(annotations, name, lineno)
    if chosen is None:
        skipped[UNLABELLED] += 1
        return None
    results = chosen.get("result", [])
    if not isinstance(results, list):
        raise DataError(name, lineno, "Label Studio annotation 'result' must be a list")
    spans: list[Entity] = []
    for result in results:
        if not isinstance(result, dict):
            raise DataError(name, lineno, f"Label Studio result {result!r} must be an object")
        kind = result.get("type", "labels")
        if kind != "labels":  # relation, choices, textarea, ...: nothing a tagger learns
            skipped[f"Label Studio results that are not text spans ({kind})"] += 1
            continue
        if not isinstance(result.get("value"), dict):
            raise DataError(name, lineno, f"Label Studio result {result!r} has no 'value' object")
        spans.extend(_value_spans(result["value"], text, name, lineno))
    return text, spans


def min_spans(items: list, text: str, name: str, lineno: int) -> list[Entity]:
    """Spans of a JSON-MIN record's "label" list: [{"start", "end", "text", "labels"}]."""
    spans: list[Entity] = []
    for item in items:
        if not isinstance(item, dict):
            raise DataError(name, lineno, f"Label Studio label {item!r} must be an object")
        spans.extend(_value_spans(item, text, name, lineno))
    return spans


def _task_text(data: dict, name: str, lineno: int) -> str:
    if isinstance(data.get("text"), str):
        return data["text"]
    strings = [key for key, value in data.items() if isinstance(value, str)]
    if len(strings) == 1:  # the labelling config named the text field differently
        return data[strings[0]]
    raise DataError(
        name, lineno,
        f"Label Studio task 'data' needs a 'text' string (found keys {sorted(data)})",
    )


def _latest_annotation(annotations: list, name: str, lineno: int) -> dict | None:
    best, best_key = None, None
    for position, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            raise DataError(name, lineno, f"Label Studio annotation {ann!r} must be an object")
        if ann.get("was_cancelled"):
            continue
        key = (_timestamp(ann.get("updated_at") or ann.get("created_at")), position)
        if best_key is None or key > best_key:
            best, best_key = ann, key
    return best


def _timestamp(value: object) -> float:
    """Seconds since the epoch of an ISO time stamp; -inf when absent or unreadable."""
    if not isinstance(value, str):
        return float("-inf")
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return float("-inf")
    # A stamp without a zone is read as local time; one export uses one convention.
    return stamp.timestamp()


def _value_spans(value: dict, text: str, name: str, lineno: int) -> list[Entity]:
    labels = value.get("labels")
    if not (isinstance(labels, list) and labels):
        raise DataError(name, lineno, f"Label Studio value {value!r} has no 'labels' list")
    start, end = value.get("start"), value.get("end")
    if "text" in value and isinstance(start, int) and isinstance(end, int):
        start, end = _fix_utf16(start, end, value["text"], text)
    spans = [make_entity(start, end, label, text, name, lineno) for label in labels]
    if "text" in value and value["text"] != text[start:end]:
        raise DataError(
            name, lineno,
            f"Label Studio span text {value['text']!r} does not match text[{start}:{end}] = "
            f"{text[start:end]!r} (end offsets are exclusive)",
        )
    return spans


def _fix_utf16(start: int, end: int, mention: object, text: str) -> tuple[int, int]:
    """Offsets in characters, also when the browser counted UTF-16 code units.

    Label Studio's editor runs in JavaScript, where a character outside the Basic
    Multilingual Plane (an emoji, a rare CJK Extension B character) counts twice. When the
    offsets as given do not match the stored text but the UTF-16 reading does, use that.
    """
    if text[start:end] == mention or all(ord(c) < 0x10000 for c in text):
        return start, end
    index_of: dict[int, int] = {}
    units = 0
    for index, char in enumerate(text):
        index_of[units] = index
        units += 2 if ord(char) >= 0x10000 else 1
    index_of[units] = len(text)
    if start in index_of and end in index_of:
        s, e = index_of[start], index_of[end]
        if text[s:e] == mention:
            return s, e
    return start, end
