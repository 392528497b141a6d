"""Corpus readers: every supported file becomes a `Corpus` of `Example`s with entity spans.

Supported inputs (`read_corpus` tells them apart by content):
  * CoNLL (`read_conll`): `CHAR<TAB>TAG` (or `CHAR TAG`) per line, blank lines between
    sentences, in the bio, bioes or bmes scheme (auto-detected per file).
  * JSON (`read_json`): JSON lines, a JSON array of records or concatenated (pretty-printed)
    objects (see `json_shapes`), the record shape detected per file:
      cluener       {"text", "label": {TYPE: {MENTION: [[start, end_inclusive], ...]}}}
      entities      {"text", "entities": [{"start", "end" (exclusive), "type" | "label"}]}
      doccano       {"text", "label" | "labels": [[start, end_exclusive, "TYPE"], ...]}, or
                    {"text", "entities": [{"start_offset", "end_offset", "label"}]}
      label-studio  Label Studio JSON export tasks {"data": {"text"}, "annotations": [...]}
                    (latest non-cancelled annotation) or JSON-MIN {"text", "label": [{...}]}
      groundtruth   SageMaker Ground Truth NER output manifest: {"source", ATTR: {"annotations":
                    {"entities": [{"label", "startOffset", "endOffset" (exclusive)}]}}, ...}
  * brat standoff (`read_brat`): NAME.txt + NAME.ann, or a directory of such pairs.

Every problem raises `DataError` naming file and line. What is recoverable is repaired and
counted for one warning (`Corpus.repair_message`): invalid tag transitions (I- without B-,
...), overlapping spans (flat tags hold one entity per character; `overlaps.py` keeps one by
the chosen rule), and what a tool exported that is not an entity (brat relations, Label
Studio tasks nobody labelled, ...).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import brat, label_studio
from .doccano import doccano_spans
from .errors import DataError
from .example import Entity, Example
from .json_shapes import ACCEPTED_FORMATS, ACCEPTED_RECORDS, first_value_is_json, iter_records
from .overlaps import OverlapResolver, check_rule
from .schemes import SCHEMES, check_tag, decode_with_issues, detect_scheme
from .spans import check_mention, is_int, make_entity

# How many repair locations a Corpus keeps for its warning message.
MAX_REPAIR_SAMPLES = 5
CORPUS_FORMATS = ("auto", "conll", "json", "jsonl", "brat")  # "jsonl" = "json" (any JSON layout)
JSON_FORMATS = ("cluener", "entities", "doccano", "label-studio", "groundtruth")


@dataclass
class Corpus:
    """A file read into examples, with what was learnt about it on the way.

    Attributes:
      examples: the sentences, in file order.
      path: the file (or brat directory) read.
      format: "conll", "brat" or one of JSON_FORMATS.
      scheme: the tag scheme of a CoNLL source ("bio", "bioes", "bmes"); None for spans.
      repairs: number of invalid tag transitions that lenient decoding repaired.
      repair_samples: the first few repairs as "FILE:LINE: description".
      overlaps: the overlap rule used ("outer", "first", "error").
      dropped: entity type -> spans of that type dropped because they overlapped another.
      dropped_samples: the first few drops as "FILE:LINE: description".
      skipped: what the file holds that is deliberately not read as an entity
        (description -> count), e.g. brat relation lines or discontinuous spans.
      skipped_samples: locations of the first few skipped items worth looking at.
    """

    examples: list[Example]
    path: str
    format: str
    scheme: str | None = None
    repairs: int = 0
    repair_samples: list[str] = field(default_factory=list)
    overlaps: str = "outer"
    dropped: dict[str, int] = field(default_factory=dict)
    dropped_samples: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_samples: list[str] = field(default_factory=list)

    @property
    def types(self) -> list[str]:
        """Sorted entity types occurring in the corpus."""
        return sorted({ent.type for ex in self.examples for ent in ex.entities})

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values())

    def repair_message(self) -> str | None:
        """One warning paragraph about everything repaired, dropped or skipped; None if nothing.

        Returns:
          e.g. "train.txt: repaired 3 invalid tag transitions (e.g. train.txt:88: I-LOC
          without B-LOC)", or "train.json: dropped 2 overlapping spans (company 2); kept the
          outermost (longest) span of each overlap (--overlaps outer) (e.g. ...)".
        """
        parts = []
        if self.repairs:
            samples = "; ".join(self.repair_samples)
            parts.append(f"repaired {self.repairs} invalid tag transitions (e.g. {samples})")
        resolver = OverlapResolver(self.overlaps, Counter(self.dropped), self.dropped_samples)
        if resolver.total:
            parts.append(resolver.message())
        if self.skipped:
            items = ", ".join(f"{n} {what}" for what, n in self.skipped.items())
            where = f" (e.g. {'; '.join(self.skipped_samples)})" if self.skipped_samples else ""
            parts.append(f"left out {items}{where}")
        if not parts:
            return None
        return f"{self.path}: " + "; ".join(parts)


def read_corpus(
    path: str | os.PathLike, format: str = "auto", scheme: str = "auto", overlaps: str = "outer"
) -> Corpus:
    """Read a corpus file in whichever supported format it is.

    Args:
      path: the file (for brat: NAME.txt, NAME.ann or a directory of pairs).
      format: "auto" (brat when .ann files are there; JSON when the content starts with a
        JSON object or array, CoNLL otherwise; see `_sniff_format`), "conll", "json" (any JSON layout
        and record shape; "jsonl" is the same) or "brat".
      scheme: tag scheme for CoNLL files ("auto", "bio", "bioes", "bmes"); ignored otherwise.
      overlaps: what to do with overlapping spans in span formats: "outer" (keep the
        longest), "first" (keep the first listed) or "error".

    Returns:
      The Corpus.

    Raises:
      DataError: the file is malformed; ValueError: unknown `format` or `overlaps`.
    """
    check_rule(overlaps)
    if format not in CORPUS_FORMATS:
        raise ValueError(
            f"unknown corpus format {format!r}; expected one of {', '.join(CORPUS_FORMATS)}"
        )
    if format == "auto":
        if brat.is_brat(path):
            format = "brat"
        elif Path(path).is_dir():
            raise DataError(path, None, f"a directory holds no corpus unless it has brat .ann files; {ACCEPTED_FORMATS}")
        else:
            format = _sniff_format(read_text(os.fspath(path)))
            if format == "conll":
                return _read_conll_detected(path, scheme)
    if format == "conll":
        return read_conll(path, scheme=scheme)
    if format == "brat":
        return read_brat(path, overlaps=overlaps)
    return read_json(path, overlaps=overlaps)


def _sniff_format(text: str) -> str:
    """"json" or "conll" for a file's content (never by its name).

    JSON when the content starts with a complete JSON object or array; also when it starts
    with "{" or "[" but the first line is not a two-column CoNLL line, so that broken JSON
    is reported as JSON (with its line and column) rather than as a CoNLL misfit.
    """
    if first_value_is_json(text):
        return "json"
    first = next((line for line in text.split("\n") if line.strip()), "")
    if first.lstrip()[:1] in ("{", "[") and len(first.rstrip().split("\t" if "\t" in first else None)) != 2:
        return "json"
    return "conll"


def _read_conll_detected(path: str | os.PathLike, scheme: str) -> Corpus:
    """read_conll for a file detected as CoNLL; a first-line misfit lists every accepted format."""
    try:
        return read_conll(path, scheme=scheme)
    except DataError as err:
        text = read_text(os.fspath(path))
        first = next((i for i, line in enumerate(text.split("\n"), 1) if line.strip()), None)
        if err.line == first and err.message.startswith("expected"):
            raise DataError(
                err.path, err.line, f"{err.message} (read as CoNLL: the file does not start with "
                f"a JSON object or array); {ACCEPTED_FORMATS}"
            ) from None
        raise


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
    sentences = _conll_sentences(name, read_text(name))
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


def read_json(path: str | os.PathLike, overlaps: str = "outer") -> Corpus:
    """Read a JSON file of sentences with entity spans (layout and record shape detected).

    Args:
      path: JSON lines, a JSON array of records, or concatenated objects; a record without
        annotations is a sentence without entities.
      overlaps: "outer", "first" or "error" (see `overlaps.py`).

    Returns:
      The Corpus, `format` being one of JSON_FORMATS.

    Raises:
      DataError: invalid JSON, a record in a different shape from the rest of the file,
        offsets out of range, a mention not matching its text, overlaps under "error".
    """
    name = os.fspath(path)
    resolver = OverlapResolver(overlaps)
    skipped: Counter = Counter()
    examples: list[Example] = []
    file_format: str | None = None
    for lineno, obj in iter_records(name, read_text(name)):
        kind = _record_kind(obj, name, lineno)
        if kind is not None:
            if file_format is None:
                file_format = kind
            elif kind != file_format:
                raise DataError(
                    name, lineno, f"the record on this line is in {kind} format but earlier lines are {file_format}"
                )
        parsed = _parse_record(obj, kind, name, lineno, skipped)
        if parsed is None:
            continue
        text, spans = parsed
        entities = resolver.resolve(spans, text, name, lineno)
        examples.append(Example(text, entities, f"{name}:{lineno}"))
    return Corpus(
        examples, name, file_format or "entities", overlaps=overlaps,
        dropped=dict(resolver.dropped), dropped_samples=resolver.samples, skipped=dict(skipped),
    )


read_jsonl = read_json  # the earlier name, kept for callers


def read_brat(path: str | os.PathLike, overlaps: str = "outer") -> Corpus:
    """Read brat standoff annotations (see `brat.py`): NAME.txt/NAME.ann or a directory of pairs.

    Args:
      path: the .txt, the .ann or the directory.
      overlaps: "outer", "first" or "error".

    Returns:
      The Corpus (format "brat"), one example per non-blank text line.

    Raises:
      DataError: a missing partner file, a malformed .ann line, wrong offsets.
    """
    resolver = OverlapResolver(overlaps)
    skipped: Counter = Counter()
    samples: list[str] = []
    examples: list[Example] = []
    for txt, ann in brat.brat_pairs(path):
        examples += brat.read_brat_document(
            os.fspath(txt), read_text(os.fspath(txt)), os.fspath(ann), read_text(os.fspath(ann)),
            resolver, skipped, samples, MAX_REPAIR_SAMPLES,
        )
    return Corpus(
        examples, os.fspath(path), "brat", overlaps=overlaps, dropped=dict(resolver.dropped),
        dropped_samples=resolver.samples, skipped=dict(skipped), skipped_samples=samples,
    )


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


# --- JSON record helpers ------------------------------------------------------------------


def _record_kind(obj: dict, name: str, lineno: int) -> str | None:
    """Which record shape `obj` is in; None for a text without any annotation key."""
    if label_studio.is_task(obj):
        return "label-studio"
    if "text" in obj:
        if "entities" in obj:
            items = obj["entities"]
            doccano = isinstance(items, list) and any(
                isinstance(i, dict) and "start_offset" in i for i in items
            )
            return "doccano" if doccano else "entities"
        for key in ("label", "labels"):
            if key in obj:
                value = obj[key]
                if isinstance(value, dict):
                    return "cluener"
                if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                    return "label-studio"
                return "doccano"
        return None
    if "source" in obj:
        return "groundtruth"
    raise DataError(
        name, lineno,
        f"expected a 'text' key (CLUENER, entities, doccano), 'data' (Label Studio) or 'source' "
        f"(Ground Truth), got keys {sorted(obj)[:8]}; accepted record shapes: {ACCEPTED_RECORDS}",
    )


def _parse_record(
    obj: dict, kind: str | None, name: str, lineno: int, skipped: Counter
) -> tuple[str, list[Entity]] | None:
    """The text and spans (in listed order) of one record; None for a record to skip."""
    if kind == "label-studio" and label_studio.is_task(obj):
        return label_studio.task_spans(obj, name, lineno, skipped)
    key = "source" if kind == "groundtruth" else "text"
    text = obj.get(key)
    if not isinstance(text, str):
        raise DataError(name, lineno, f"'{key}' must be a string, got {type(text).__name__}")
    if kind == "cluener":
        return text, _cluener_spans(obj.get("label"), text, name, lineno)
    if kind in ("entities", "doccano") and "entities" in obj:
        return text, _entities_spans(obj["entities"], text, name, lineno)
    if kind in ("doccano", "label-studio"):
        items = obj.get("label", obj.get("labels", []))
        if kind == "doccano":
            return text, doccano_spans(items, text, name, lineno)
        return text, label_studio.min_spans(items, text, name, lineno)
    if kind == "groundtruth":
        return text, _groundtruth_spans(obj, name, lineno)
    return text, []


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
                if not (isinstance(pos, list) and len(pos) == 2 and all(is_int(p) for p in pos)):
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
    """[{"start", "end" (exclusive), "type" | "label", optional "text"}]; doccano's relation-mode
    export writes the offsets as "start_offset" / "end_offset"."""
    if not isinstance(items, list):
        raise DataError(name, lineno, "'entities' must be a list")
    spans = []
    for item in items:
        if not isinstance(item, dict):
            raise DataError(name, lineno, f"entity {item!r} must be an object")
        type_ = item.get("type", item.get("label"))
        start = item.get("start", item.get("start_offset"))
        end = item.get("end", item.get("end_offset"))
        ent = make_entity(start, end, type_, text, name, lineno)
        if "text" in item:
            check_mention(ent, item["text"], text, name, lineno, "(end offsets are exclusive)")
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
        spans.append(make_entity(start, end, item.get("label"), text, name, lineno))
    return spans


# --- shared --------------------------------------------------------------------------------


def read_text(name: str) -> str:
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
