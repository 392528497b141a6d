"""The two types every other module speaks: an `Entity` span and an `Example` sentence.

Whatever the file format or tag scheme on disk, a corpus becomes a list of `Example`s whose
entities are character spans over the original text. Tag sequences (BIO, BIOES, BMES) exist
only at the edges: when reading CoNLL files and when the model is trained or decoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class Entity:
    """A typed span of characters: `text[start:end]` (end exclusive).

    `score` is the model's probability of exactly this span and type (predictions only; see
    `model.crf`). It takes no part in equality, hashing or ordering, so a predicted entity
    equals the gold entity with the same span and type.
    """

    start: int
    end: int
    type: str
    score: float | None = field(default=None, compare=False)

    def to_json(self, text: str | None = None) -> dict:
        """{"type", "start", "end"}, then "text" when `text` is given and "score" (rounded to
        4 decimals) when set."""
        out = {"type": self.type, "start": self.start, "end": self.end}
        if text is not None:
            out["text"] = text[self.start : self.end]
        if self.score is not None:
            out["score"] = round(float(self.score), 4)
        return out


@dataclass
class Example:
    """One sentence with its gold (or predicted) entities.

    Attributes:
      text: the sentence exactly as in the source (one character = one token).
      entities: spans over `text`, sorted, non-overlapping.
      source: "FILE:LINE" where the sentence starts, so later errors can point back to it.
    """

    text: str
    entities: list[Entity] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return len(self.text)


# How far two answers' scores for the same entity may be apart and still count as the same
# answer. Scores are float32 probabilities rounded to 4 decimals (`Entity.to_json`). The same
# text gives bit-identical scores only in the same batch shape on the same CPU kind: the
# server merges requests into other batches than an offline call, and matrix-product kernels
# (oneDNN's AVX2 and AVX-512 paths differently) add in an order that depends on the shape.
# The last printed digit can then flip (seen: 0.6783 against 0.6782). A real scoring fault
# moves a score by far more than 0.001; entities (span and type) must match exactly.
SCORE_TOLERANCE = 1e-3


def entities_difference(got: list[dict], want: list[dict], score_tolerance: float = SCORE_TOLERANCE) -> str | None:
    """None when two entity lists (`Entity.to_json` dicts) agree, else what differs first.

    Every key but "score" must be equal; scores (when either side has one) within
    `score_tolerance`.
    """
    if len(got) != len(want):
        return f"{len(got)} entities instead of {len(want)}: {got} vs {want}"
    for i, (g, w) in enumerate(zip(got, want)):
        if {k: v for k, v in g.items() if k != "score"} != {k: v for k, v in w.items() if k != "score"}:
            return f"entity {i}: {g} instead of {w}"
        if "score" in g or "score" in w:
            if "score" not in g or "score" not in w:
                return f"entity {i}: a score on one side only: {g} vs {w}"
            if not abs(g["score"] - w["score"]) <= score_tolerance:
                return f"entity {i}: score {g['score']} instead of {w['score']} (tolerance {score_tolerance:g})"
    return None


def records_difference(got: list[dict], want: list[dict], score_tolerance: float = SCORE_TOLERANCE) -> str | None:
    """None when two lists of prediction records agree, else what differs first.

    A record is {"text", "entities": [...], ...}: every key is compared exactly except the
    entities, which `entities_difference` compares (scores within `score_tolerance`).
    """
    if len(got) != len(want):
        return f"{len(got)} records instead of {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        if not isinstance(g, dict) or not isinstance(w, dict):
            if g != w:
                return f"record {i}: {g!r} instead of {w!r}"
            continue
        if {k: v for k, v in g.items() if k != "entities"} != {k: v for k, v in w.items() if k != "entities"}:
            return f"record {i}: {g} instead of {w}"
        difference = entities_difference(g.get("entities", []), w.get("entities", []), score_tolerance)
        if difference is not None:
            return f"record {i} ({g.get('text', '')[:40]!r}): {difference}"
    return None
