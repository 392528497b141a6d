"""Overlapping spans: flat tags hold one entity per character, so overlaps are resolved here.

Span formats (CLUENER, doccano, Label Studio, brat, ...) can nest entities — CLUENER's
training set has a `book` title with `company` names inside it — but a BIO tag sequence
cannot. Each sentence's spans therefore go through `OverlapResolver.resolve`, which applies
one documented rule and counts what it dropped:

  outer  (default) longest span first; ties: the earlier start, then the one listed first.
         A span is dropped when it overlaps one already kept, so a nested group keeps its
         outermost span and a chain of overlaps keeps the longest non-overlapping ones.
  first  spans in the order the file lists them; a span overlapping one kept earlier is
         dropped.
  error  the first overlap stops reading with a `DataError` at its file:line.

Exact duplicates (same start, end and type) are merged silently: no information is lost.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .errors import DataError
from .example import Entity

OVERLAP_RULES = ("outer", "first", "error")
RULE_DESCRIPTIONS = {
    "outer": "kept the outermost (longest) span of each overlap",
    "first": "kept the first-listed span of each overlap",
}
MAX_SAMPLES = 5


def check_rule(rule: str) -> str:
    """Return `rule` if it is one of OVERLAP_RULES, else raise ValueError."""
    if rule not in OVERLAP_RULES:
        raise ValueError(f"unknown overlap rule {rule!r}; expected one of {', '.join(OVERLAP_RULES)}")
    return rule


@dataclass
class OverlapResolver:
    """Applies one overlap rule to sentence after sentence and tallies the spans it dropped.

    Attributes:
      rule: "outer", "first" or "error".
      dropped: entity type -> number of spans of that type dropped.
      samples: the first few drops as "FILE:LINE: TYPE 'text' [s, e) inside/overlapping ...".
    """

    rule: str = "outer"
    dropped: Counter = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_rule(self.rule)

    def resolve(
        self, spans: list[Entity], text: str, name: str, lines: int | list[int]
    ) -> list[Entity]:
        """Keep a non-overlapping subset of `spans` by the rule.

        Args:
          spans: the sentence's spans in the order the file lists them (valid offsets).
          text: the sentence, for messages.
          name: the file, for messages.
          lines: the 1-based line of every span (a list parallel to `spans`), or one line
            for all of them (a JSON record).

        Returns:
          The kept spans, sorted by position.

        Raises:
          DataError: rule "error" and two spans overlap (at the line of the later-listed one).
        """
        line_of = lines if isinstance(lines, list) else [lines] * len(spans)
        unique: list[int] = []  # indices into spans, first occurrence of each exact duplicate
        seen: set[Entity] = set()
        for i, ent in enumerate(spans):
            if ent not in seen:
                seen.add(ent)
                unique.append(i)
        if self.rule == "outer":
            order = sorted(unique, key=lambda i: (spans[i].start - spans[i].end, spans[i].start, i))
        else:
            order = unique
        kept: list[int] = []
        for i in order:
            ent = spans[i]
            clash = next((k for k in kept if _overlap(ent, spans[k])), None)
            if clash is None:
                kept.append(i)
                continue
            other = spans[clash]
            later, earlier = (i, clash) if i > clash else (clash, i)
            if self.rule == "error":
                raise DataError(
                    name, line_of[later],
                    f"overlapping entities {_show(spans[earlier], text)} and "
                    f"{_show(spans[later], text)}; flat tags hold one entity per character "
                    "(use --overlaps outer or first to keep one of them)",
                )
            self.dropped[ent.type] += 1
            if len(self.samples) < MAX_SAMPLES:
                relation = "inside" if other.start <= ent.start and ent.end <= other.end else "overlapping"
                self.samples.append(
                    f"{name}:{line_of[i]}: {_show(ent, text)} {relation} {_show(other, text)}"
                )
        return sorted(spans[i] for i in kept)

    @property
    def total(self) -> int:
        return sum(self.dropped.values())

    def message(self) -> str | None:
        """One sentence about the dropped spans, or None when nothing was dropped.

        Returns:
          e.g. "dropped 2 overlapping spans (company 2); kept the outermost (longest) span of
          each overlap (--overlaps outer) (e.g. train.json:5: company '腾讯' [3, 5) inside
          book '《腾讯传》' [2, 8))".
        """
        if not self.total:
            return None
        per_type = ", ".join(f"{t} {n}" for t, n in sorted(self.dropped.items()))
        return (
            f"dropped {self.total} overlapping span{'s' if self.total != 1 else ''} ({per_type}); "
            f"{RULE_DESCRIPTIONS[self.rule]} (--overlaps {self.rule}) "
            f"(e.g. {'; '.join(self.samples)})"
        )


def _overlap(a: Entity, b: Entity) -> bool:
    return a.start < b.end and b.start < a.end


def _show(ent: Entity, text: str) -> str:
    return f"{ent.type} {text[ent.start : ent.end]!r} [{ent.start}, {ent.end})"
