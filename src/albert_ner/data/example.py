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
