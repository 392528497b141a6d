"""brat standoff: a document `NAME.txt` with its annotations in `NAME.ann` beside it.

Only text-bound annotations carry entities:

  T1<TAB>PER 0 2<TAB>张三            TYPE START END (character offsets, end exclusive)
  T2<TAB>LOC 5 7;9 11<TAB>北京 上海   a discontinuous span: fragments separated by ";"

Relations (R), events (E), attributes (A/M), normalisations (N), notes (#) and equivalences
(*) say nothing a flat tagger can learn; they are ignored and counted. A discontinuous span
cannot be written as one BIO entity: it is left out and counted, with its location, in the
reader's warning — never dropped silently.

Each non-blank line of the .txt becomes one sentence; an entity crossing a line break is an
error (flat one-sentence-per-line formats cannot hold it).
"""

from __future__ import annotations

import bisect
import os
from collections import Counter
from pathlib import Path

from .errors import DataError
from .example import Entity, Example
from .overlaps import OverlapResolver
from .spans import check_mention, is_int, make_entity

DISCONTINUOUS = "discontinuous brat spans (flat tags cannot hold them; left out)"
_KIND_NAMES = {"R": "relation", "E": "event", "A": "attribute", "M": "attribute",
               "N": "normalization", "#": "note", "*": "equivalence"}


def is_brat(path: str | os.PathLike) -> bool:
    """True for a directory holding .ann files, an .ann file, or a .txt with an .ann beside it."""
    path = Path(path)
    if path.is_dir():
        return any(path.glob("*.ann"))
    return path.suffix == ".ann" or (path.suffix == ".txt" and path.with_suffix(".ann").is_file())


def brat_pairs(path: str | os.PathLike) -> list[tuple[Path, Path]]:
    """The (.txt, .ann) pairs named by a directory, an .ann file or a .txt file.

    Raises:
      DataError: an .ann file without its .txt, or a directory without .ann files.
    """
    path = Path(path)
    anns = sorted(path.glob("*.ann")) if path.is_dir() else [path.with_suffix(".ann")]
    if not anns:
        raise DataError(path, None, "no brat .ann files in this directory")
    pairs = []
    for ann in anns:
        txt = ann.with_suffix(".txt")
        if not txt.is_file():
            raise DataError(ann, None, f"brat annotations need their text beside them: {txt} not found")
        if not ann.is_file():
            raise DataError(txt, None, f"brat text needs its annotations beside it: {ann} not found")
        pairs.append((txt, ann))
    return pairs


def read_brat_document(
    txt_name: str, text: str, ann_name: str, ann_text: str,
    resolver: OverlapResolver, skipped: Counter, samples: list[str], max_samples: int = 5,
) -> list[Example]:
    """One brat document as sentences (one per non-blank line of the text).

    Args:
      txt_name, text: the .txt file and its content (offsets count every character, "\\r"
        included, as brat does).
      ann_name, ann_text: the .ann file and its content.
      resolver: overlap rule and tally, applied per sentence.
      skipped, samples: what was left out on purpose, updated in place.
      max_samples: cap on `samples`.

    Returns:
      The sentences with their entities.

    Raises:
      DataError (at the .ann line): malformed T line, offsets past the text, span text not
        matching the .txt, an entity crossing a line break.
    """
    # Line i of the text spans [starts[i], starts[i] + len(lines[i])).
    lines = text.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    found: dict[int, list[tuple[Entity, int]]] = {}  # text line -> [(span, .ann line)]
    for lineno, raw in enumerate(ann_text.split("\n"), 1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        if not line.startswith("T"):
            kind = _KIND_NAMES.get(line[0], f"unknown '{line[0]}'")
            skipped[f"brat {kind} lines (not entities; ignored)"] += 1
            continue
        parsed = _text_bound(line, text, ann_name, lineno, skipped, samples, max_samples)
        if parsed is None:
            continue
        ent, mention = parsed
        index = bisect.bisect_right(starts, ent.start) - 1
        content_end = starts[index] + len(lines[index].rstrip("\r"))
        if ent.end > content_end:
            raise DataError(
                ann_name, lineno,
                f"{ent.type} [{ent.start}, {ent.end}) crosses a line break of {txt_name}; "
                "each line is one sentence, so an entity must stay within its line",
            )
        if mention is not None:
            check_mention(ent, mention, text, ann_name, lineno,
                          "(brat offsets count characters of the .txt, end exclusive)")
        found.setdefault(index, []).append(
            (Entity(ent.start - starts[index], ent.end - starts[index], ent.type), lineno)
        )
    examples = []
    for index, line in enumerate(lines):
        line = line.rstrip("\r")
        spans = found.get(index, [])
        if not line.strip() and not spans:
            continue
        kept = resolver.resolve([s for s, _ in spans], line, ann_name, [n for _, n in spans])
        examples.append(Example(line, kept, f"{txt_name}:{index + 1}"))
    return examples


def _text_bound(
    line: str, text: str, name: str, lineno: int,
    skipped: Counter, samples: list[str], max_samples: int,
) -> tuple[Entity, str | None] | None:
    """Parse a T line into (span, its text as written); None (counted) for a discontinuous span."""
    fields = line.split("\t")
    if len(fields) < 2 or " " not in fields[1]:
        raise DataError(
            name, lineno,
            f"expected 'T<ID><TAB>TYPE START END<TAB>TEXT' (brat text-bound annotation), got {line[:80]!r}",
        )
    type_, offsets = fields[1].split(" ", 1)
    fragments = []
    for fragment in offsets.split(";"):
        bounds = fragment.split()
        values = [int(b) if b.isascii() and b.isdigit() else b for b in bounds]
        if len(values) != 2 or not all(is_int(v) for v in values):
            raise DataError(
                name, lineno, f"brat offsets {offsets!r} are not 'START END' (or 'S E;S E' fragments)"
            )
        fragments.append(make_entity(values[0], values[1], type_, text, name, lineno))
    if len(fragments) > 1:
        skipped[DISCONTINUOUS] += 1
        if len(samples) < max_samples:
            samples.append(f"{name}:{lineno}: {fields[0]} {type_} {offsets}")
        return None
    return fragments[0], (fields[2] if len(fields) > 2 else None)
