"""Corpus readers: CoNLL character-per-line files and JSON-lines span files become `Example`s.

Supported inputs:
  * CoNLL (`read_conll`): `CHAR<TAB>TAG` (or `CHAR TAG`) per line, blank lines between
    sentences, in the bio, bioes or bmes scheme (auto-detected per file).
  * JSON lines (`read_jsonl`), one sentence per line, format detected per file:
      cluener      {"text", "label": {TYPE: {MENTION: [[start, end_inclusive], ...]}}}
      entities     {"text", "entities": [{"start", "end" (exclusive), "type" | "label"}]}
      groundtruth  SageMaker Ground Truth NER output manifest: {"source", ATTR: {"annotations":
                   {"entities": [{"label", "startOffset", "endOffset" (exclusive)}]}}, ...}

Every problem raises `DataError` naming file and line. Invalid but recoverable tag sequences
(I- without B-, ...) are repaired, counted in `Corpus.repairs` and sampled for a warning.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError
from .example import Entity, Example
from .schemes import SCHEMES, check_tag, decode_with_issues, detect_scheme

# How many repair locations a Corpus keeps for its warning message.
MAX_REPAIR_SAMPLES = 5
JSONL_EXTENSIONS = (".json", ".jsonl", ".manifest")
JSONL_FORMATS = ("cluener", "entities", "groundtruth")


@dataclass
class Corpus:
    """A file read into examples, with what was learnt about it on the way.

    Attributes:
      examples: the sentences, in file order.
      path: the file read.
      format: "conll", "cluener", "entities" or "groundtruth".
      scheme: the tag scheme of a CoNLL source ("bio", "bioes", "bmes"); None for JSON.
      repairs: number of invalid tag transitions that lenient decoding repaired.
      repair_samples: the first few repairs as "FILE:LINE: description".
    """

    examples: list[Example]
    path: str
    format: str
    scheme: str | None = None
    repairs: int = 0
    repair_samples: list[str] = field(default_factory=list)

    @property
    def types(self) -> list[str]:
        """Sorted entity types occurring in the corpus."""
        return sorted({ent.type for ex in self.examples for ent in ex.entities})

    def __len__(self) -> int:
        return len(self.examples)

    def repair_message(self) -> str | None:
        """A one-paragraph warning about repaired tags, or None when nothing was repaired.

        Returns:
          e.g. "train.txt: repaired 3 invalid tag transitions (e.g. train.txt:88: I-LOC
          without B-LOC)".
        """
        if not self.repairs:
            return None
        samples = "; ".join(self.repair_samples)
        return f"{self.path}: repaired {self.repairs} invalid tag transitions (e.g. {samples})"


def read_corpus(path: str | os.PathLike, format: str = "auto", scheme: str = "auto") -> Corpus:
    """Read a corpus file in whichever supported format it is.

    Args:
      path: the file.
      format: "auto" (by extension .json/.jsonl/.manifest, else by whether the first
        non-blank character is "{"), "conll" or "jsonl".
      scheme: tag scheme for CoNLL files ("auto", "bio", "bioes", "bmes"); ignored for JSON.

    Returns:
      The Corpus.

    Raises:
      DataError: the file is malformed; ValueError: unknown `format`.
    """
    if format == "auto":
        format = "jsonl" if _looks_like_jsonl(path) else "conll"
    if format == "conll":
        return read_conll(path, scheme=scheme)
    if format == "jsonl":
        return read_jsonl(path)
    raise ValueError(f"unknown corpus format {format!r}; expected 'auto', 'conll' or 'jsonl'")


def read_conll(path: str | os.PathLike, scheme: str = "auto") -> Corpus:
    """Read a one-character-per-line CoNLL file.

    A line is split on its tab if it has one (so the character may be a space), otherwise on
    whitespace. Blank lines separate sentences; `-DOCSTART-` lines are skipped; CRLF line
    ends and a missing final blank line are fine.

    Args:
      path: the file.
      scheme: "auto" (detect from all tags in the file), "bio", "bioes" or "bmes".

    Returns:
      The Corpus, with `scheme` set to the scheme used.

    Raises:
      DataError: non-UTF-8 bytes, wrong column count, more than one character on a line,
        unknown tag, or a tag prefix the scheme does not allow.
    """
    if scheme != "auto" and scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; expected 'auto' or one of {SCHEMES}")
    name = os.fspath(path)
    sentences = _conll_sentences(name, _read_text(name))
    if scheme == "auto":
        scheme = detect_scheme(tag for sent in sentences for _, tag, _ in sent)

    examples: list[Example] = []
    repairs = 0
    samples: list[str] = []
    checked: set[str] = set()  # tags already validated; a corpus has only a few distinct ones
    for sent in sentences:
        tags = [tag for _, tag, _ in sent]
        for _, tag, lineno in sent:
            if tag not in checked:
                try:
                    check_tag(tag, scheme)
                except ValueError as err:
                    raise DataError(name, lineno, str(err)) from None
                checked.add(tag)
        entities, issues = decode_with_issues(tags, scheme)
        repairs += len(issues)
        for index, description in issues[: MAX_REPAIR_SAMPLES - len(samples)]:
            samples.append(f"{name}:{sent[index][2]}: {description}")
        text = "".join(char for char, _, _ in sent)
        examples.append(Example(text, entities, f"{name}:{sent[0][2]}"))
    return Corpus(examples, name, "conll", scheme, repairs, samples)


def read_jsonl(path: str | os.PathLike) -> Corpus:
    """Read a JSON-lines file of sentences with entity spans (format detected per file).

    Args:
      path: the file; blank lines are skipped, a line without annotations is a sentence
        without entities.

    Returns:
      The Corpus, `format` being "cluener", "entities" or "groundtruth".

    Raises:
      DataError: invalid JSON, a line in a different format from the rest of the file,
        offsets out of range, a CLUENER mention not matching its text, overlapping entities.
    """
    name = os.fspath(path)
    examples: list[Example] = []
    file_format: str | None = None
    for lineno, raw in enumerate(_read_text(name).split("\n"), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as err:
            raise DataError(name, lineno, f"invalid JSON: {err.msg} (column {err.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(name, lineno, f"expected a JSON object, got {type(obj).__name__}")
        kind = _jsonl_kind(obj, name, lineno)
        if kind is not None:
            if file_format is None:
                file_format = kind
            elif kind != file_format:
                raise DataError(
                    name, lineno, f"line is in {kind} format but earlier lines are {file_format}"
                )
        examples.append(_parse_json_line(obj, kind or file_format, name, lineno))
    return Corpus(examples, name, file_format or "entities")


# --- CoNLL helpers -------------------------------------------------------------------------


def _conll_sentences(name: str, text: str) -> list[list[tuple[str, str, int]]]:
    """Split CoNLL text into sentences of (char, tag, 1-based line) triples."""
    sentences: list[list[tuple[str, str, int]]] = []
    current: list[tuple[str, str, int]] = []
    for lineno, raw in enumerate(text.split("\n"), 1):
        # Only the right end may be stripped: the character column can itself be a space.
        line = raw.rstrip()
        if not line or line.startswith("-DOCSTART-"):
            if current:
                sentences.append(current)
                current = []
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) != 2:
            shown = line.replace("\t", "<TAB>")
            if len(shown) > 80:
                shown = shown[:77] + "..."
            raise DataError(
                name,
                lineno,
                f"expected 'CHAR<TAB>TAG' (2 columns), got {len(parts)} columns: '{shown}'",
            )
        char, tag = parts[0], parts[1].strip()
        if len(char) != 1 and len(char.strip()) == 1:
            char = char.strip()  # a padded column such as " 中"
        if len(char) != 1:
            raise DataError(
                name,
                lineno,
                f"expected one character per line, got {char!r} ({len(char)} characters); "
                "this reader handles character-level corpora only",
            )
        current.append((char, tag, lineno))
    if current:
        sentences.append(current)
    return sentences


# --- JSON-lines helpers --------------------------------------------------------------------


def _jsonl_kind(obj: dict, name: str, lineno: int) -> str | None:
    """Which JSON-lines format a line is in; None if it has text but no annotations at all."""
    if "text" in obj:
        if "entities" in obj:
            return "entities"
        if "label" in obj:
            return "cluener"
        return None
    if "source" in obj:
        return "groundtruth"
    raise DataError(
        name, lineno, "expected a 'text' key (CLUENER / entities) or 'source' (Ground Truth)"
    )


def _parse_json_line(obj: dict, kind: str | None, name: str, lineno: int) -> Example:
    """Turn one decoded JSON line into an Example, validating every span."""
    text = obj.get("source" if kind == "groundtruth" else "text")
    if not isinstance(text, str):
        key = "source" if kind == "groundtruth" else "text"
        raise DataError(name, lineno, f"'{key}' must be a string, got {type(text).__name__}")
    if kind == "cluener":
        spans = _cluener_spans(obj.get("label"), text, name, lineno)
    elif kind == "entities":
        spans = _entities_spans(obj.get("entities", []), text, name, lineno)
    elif kind == "groundtruth":
        spans = _groundtruth_spans(obj, name, lineno)
    else:
        spans = []
    return Example(text, _checked_entities(spans, text, name, lineno), f"{name}:{lineno}")


def _cluener_spans(label: object, text: str, name: str, lineno: int) -> list[Entity]:
    """CLUENER's {TYPE: {MENTION: [[start, end_inclusive], ...]}}, each mention verified."""
    if label is None:
        return []
    if not isinstance(label, dict):
        raise DataError(name, lineno, "'label' must be an object {TYPE: {MENTION: [[start, end]]}}")
    spans = []
    for type_, mentions in label.items():
        if not isinstance(mentions, dict):
            raise DataError(
                name, lineno, f"label {type_!r} must map mentions to [[start, end]] lists"
            )
        for mention, positions in mentions.items():
            if not isinstance(positions, list):
                raise DataError(name, lineno, f"positions of {mention!r} must be a list")
            for pos in positions:
                if not (isinstance(pos, list) and len(pos) == 2 and all(_is_int(p) for p in pos)):
                    raise DataError(
                        name, lineno, f"position {pos!r} of {mention!r} is not [start, end]"
                    )
                start, last = pos
                if not 0 <= start <= last < len(text):
                    raise DataError(
                        name, lineno,
                        f"{type_} {mention!r} at [{start}, {last}] is outside the text "
                        f"(length {len(text)})",
                    )
                if text[start : last + 1] != mention:
                    raise DataError(
                        name, lineno,
                        f"{type_} {mention!r} at [{start}, {last}] does not match the text there: "
                        f"{text[start : last + 1]!r} (CLUENER end offsets are inclusive)",
                    )
                spans.append(Entity(start, last + 1, type_))
    return spans


def _entities_spans(items: object, text: str, name: str, lineno: int) -> list[Entity]:
    """The entities format: [{"start", "end" (exclusive), "type" or "label", optional "text"}]."""
    if not isinstance(items, list):
        raise DataError(name, lineno, "'entities' must be a list")
    spans = []
    for item in items:
        if not isinstance(item, dict):
            raise DataError(name, lineno, f"entity {item!r} must be an object")
        type_ = item.get("type", item.get("label"))
        ent = _make_entity(item.get("start"), item.get("end"), type_, text, name, lineno)
        if "text" in item and item["text"] != text[ent.start : ent.end]:
            raise DataError(
                name, lineno,
                f"entity text {item['text']!r} does not match text[{ent.start}:{ent.end}] = "
                f"{text[ent.start : ent.end]!r} (end offsets are exclusive)",
            )
        spans.append(ent)
    return spans


def _groundtruth_spans(obj: dict, name: str, lineno: int) -> list[Entity]:
    """Entities of a Ground Truth NER manifest line, from the label attribute's annotations."""
    # The label attribute's name is chosen by whoever created the labeling job, so find it by
    # shape: the one whose value carries annotations.entities.
    attributes = [
        key for key, value in obj.items()
        if isinstance(value, dict)
        and isinstance(value.get("annotations"), dict)
        and "entities" in value["annotations"]
    ]
    if not attributes:
        return []
    if len(attributes) > 1:
        raise DataError(name, lineno, f"several label attributes with annotations: {attributes}")
    items = obj[attributes[0]]["annotations"]["entities"]
    if not isinstance(items, list):
        raise DataError(name, lineno, "annotations.entities must be a list")
    text = obj["source"]
    spans = []
    for item in items:
        if not isinstance(item, dict):
            raise DataError(name, lineno, f"entity {item!r} must be an object")
        start, end = item.get("startOffset"), item.get("endOffset")
        spans.append(_make_entity(start, end, item.get("label"), text, name, lineno))
    return spans


def _make_entity(
    start: object, end: object, type_: object, text: str, name: str, lineno: int
) -> Entity:
    """An Entity from raw JSON values, checking types and that 0 <= start < end <= len(text)."""
    if not (_is_int(start) and _is_int(end)):
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


def _checked_entities(spans: list[Entity], text: str, name: str, lineno: int) -> list[Entity]:
    """Sort, drop exact duplicates and refuse overlaps (the model tags each character once)."""
    result: list[Entity] = []
    for ent in sorted(set(spans)):
        if result and ent.start < result[-1].end:
            prev = result[-1]
            raise DataError(
                name, lineno,
                f"overlapping entities {prev.type} {text[prev.start:prev.end]!r} "
                f"[{prev.start}, {prev.end}) and {ent.type} {text[ent.start:ent.end]!r} "
                f"[{ent.start}, {ent.end})",
            )
        result.append(ent)
    return result


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- shared --------------------------------------------------------------------------------


def _read_text(name: str) -> str:
    """The whole file as text; a UTF-8 BOM is dropped, other encodings are refused clearly.

    Decoding with errors="replace" would silently produce mojibake characters that then
    become training data, so undecodable bytes are an error pointing at their line.
    """
    data = Path(name).read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        bad = data[err.start : err.end].hex(" ")
        raise DataError(
            name,
            line,
            f"file is not valid UTF-8: byte(s) {bad} at byte offset {err.start}; "
            "re-encode it as UTF-8, e.g. `iconv -f GB18030 -t UTF-8 IN > OUT`",
        ) from None


def _looks_like_jsonl(path: str | os.PathLike) -> bool:
    """True for .json/.jsonl/.manifest files, or when the first non-blank line is a JSON object.

    Parsing the line (rather than testing for a leading "{") keeps a CoNLL file whose first
    character happens to be "{" from being mistaken for JSON.
    """
    if os.fspath(path).lower().endswith(JSONL_EXTENSIONS):
        return True
    with open(path, "rb") as handle:
        for raw in handle:
            line = raw.strip().removeprefix(b"\xef\xbb\xbf")
            if line:
                try:
                    return isinstance(json.loads(line), dict)
                except (ValueError, UnicodeDecodeError):
                    return False
    return False
