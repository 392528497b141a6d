"""Tag schemes: converting between entity spans and per-character tag sequences.

Three schemes are understood on disk:

  bio    IOB2: B-X begins an entity, I-X continues it, O is outside.
  bioes  B-X begin, I-X inside, E-X end, S-X single-character entity, O outside.
  bmes   the same grammar as bioes with M-X in place of I-X (common in Chinese corpora).

Models are trained on `bio` (default) or `bioes`; a `bmes` file is only ever a source that
is turned into spans when read. Tags may be written `B-PER` or `B_PER`.

Lenient decoding (`tags_to_entities`) follows conlleval / seqeval's default mode so that
scores computed on spans agree with the tools people compare against. The exact rules, with
I standing for I (bio, bioes) or M (bmes):

  1. B-X closes any open entity and opens X.
  2. I-X continues an open X. With nothing open it opens X ("I-X without B-X", one repair);
     with an open Y != X it closes Y and opens X ("I-X after B-Y", one repair).
  3. E-X closes an open X including this character. With nothing open, or an open Y != X
     (which is closed first), it yields the single-character entity X (one repair).
  4. S-X closes any open entity and yields the single-character entity X.
  5. O closes any open entity.
  6. bioes/bmes only: an entity closed by B-*, S-*, O or the end of the sentence instead of
     its own E-X was never terminated; it is kept as it stands and counts as one repair
     ("B-X not closed by E-X"). (A type change already counted under rules 2/3 is not
     counted twice.) In bio, entities end implicitly and this is no repair.

On valid sequences no repair is counted and, for bio, the result is exactly seqeval's
strict-IOB2 chunking.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .example import Entity, Example

SCHEMES = ("bio", "bioes", "bmes")
MODEL_SCHEMES = ("bio", "bioes")

# Prefixes valid in each scheme, in the order a TagSet lists them.
SCHEME_PREFIXES: dict[str, tuple[str, ...]] = {
    "bio": ("B", "I"),
    "bioes": ("B", "I", "E", "S"),
    "bmes": ("B", "M", "E", "S"),
}
_ALL_PREFIXES = frozenset("BIMES")


def split_tag(tag: str) -> tuple[str, str | None]:
    """Split a tag into its prefix and entity type.

    Args:
      tag: "O", or PREFIX-TYPE / PREFIX_TYPE with PREFIX one of B, I, M, E, S.

    Returns:
      (prefix, type); ("O", None) for the outside tag.

    Raises:
      ValueError: the tag has no recognised prefix or an empty type.
    """
    if tag == "O":
        return "O", None
    if len(tag) >= 3 and tag[0] in _ALL_PREFIXES and tag[1] in "-_":
        return tag[0], tag[2:]
    raise ValueError(
        f"unrecognised tag {tag!r}: expected 'O' or PREFIX-TYPE with PREFIX one of B, I, M, E, S"
    )


def check_tag(tag: str, scheme: str) -> tuple[str, str | None]:
    """Split a tag and check its prefix belongs to `scheme`.

    Args:
      tag: a tag string such as "B-PER".
      scheme: "bio", "bioes" or "bmes".

    Returns:
      (prefix, type) as from `split_tag`.

    Raises:
      ValueError: unknown tag, or a prefix the scheme does not use (e.g. M- in bio).
    """
    prefix, type_ = split_tag(tag)
    allowed = SCHEME_PREFIXES[_check_scheme(scheme)]
    if prefix != "O" and prefix not in allowed:
        raise ValueError(
            f"tag {tag!r} is not valid in the {scheme} scheme "
            f"(allowed prefixes: {', '.join(allowed)} and O)"
        )
    return prefix, type_


def detect_scheme(tags: Iterable[str]) -> str:
    """Guess the scheme a tag sequence (or a whole file's tags) was written in.

    Args:
      tags: any iterable of tag strings; malformed tags are ignored here (the reader reports
        them with their line).

    Returns:
      "bmes" if any M- tag occurs, else "bioes" if any E- or S- tag occurs, else "bio".
    """
    seen: set[str] = set()
    for tag in tags:
        # Only the first character matters; checking the separator avoids reading "Other" as O-.
        if len(tag) >= 3 and tag[1] in "-_":
            seen.add(tag[0])
    if "M" in seen:
        return "bmes"
    if "E" in seen or "S" in seen:
        return "bioes"
    return "bio"


def decode_with_issues(
    tags: Sequence[str], scheme: str
) -> tuple[list[Entity], list[tuple[int, str]]]:
    """Decode tags leniently and report every repair with its position.

    Args:
      tags: one tag per character.
      scheme: "bio", "bioes" or "bmes".

    Returns:
      (entities sorted by start, issues) where each issue is (index of the offending tag,
      human-readable description such as "I-LOC without B-LOC").

    Raises:
      ValueError: a tag is malformed or not valid for the scheme.
    """
    _check_scheme(scheme)
    ends_explicitly = scheme != "bio"  # rule 6 of the module docstring
    entities: list[Entity] = []
    issues: list[tuple[int, str]] = []
    open_type: str | None = None
    open_start = 0

    def close(at: int) -> None:
        """Close the open entity just before index `at`, noting a missing E- (rule 6)."""
        nonlocal open_type
        entities.append(Entity(open_start, at, open_type))
        if ends_explicitly:
            issues.append((at - 1, f"{tags[at - 1]} not closed by E-{open_type}"))
        open_type = None

    for i, tag in enumerate(tags):
        prefix, type_ = check_tag(tag, scheme)
        if prefix == "M":
            prefix = "I"  # bmes is bioes spelled differently
        if prefix == "I" and open_type == type_:
            continue
        if prefix == "E" and open_type == type_:
            entities.append(Entity(open_start, i + 1, type_))
            open_type = None
            continue
        # Everything else ends whatever is open at this character.
        if open_type is not None and prefix in ("I", "E"):
            # A type change: one repair, not a second one for the missing E- as well.
            entities.append(Entity(open_start, i, open_type))
            open_type = None
            issues.append((i, f"{tag} after {tags[i - 1]}"))
        elif open_type is not None:
            close(i)
        elif prefix in ("I", "E"):
            issues.append((i, f"{tag} without B-{type_}"))
        if prefix in ("B", "I"):
            open_type, open_start = type_, i
        elif prefix in ("E", "S"):
            entities.append(Entity(i, i + 1, type_))
    if open_type is not None:
        close(len(tags))
    return entities, issues


def tags_to_entities(tags: Sequence[str], scheme: str) -> tuple[list[Entity], int]:
    """Decode a tag sequence into entity spans (lenient, see module docstring).

    Args:
      tags: one tag per character.
      scheme: "bio", "bioes" or "bmes".

    Returns:
      (entities sorted by start with end exclusive, number of repairs made).

    Raises:
      ValueError: a tag is malformed or not valid for the scheme.
    """
    entities, issues = decode_with_issues(tags, scheme)
    return entities, len(issues)


def entities_to_tags(length: int, entities: Iterable[Entity], scheme: str) -> list[str]:
    """Encode entity spans as one tag per character.

    Args:
      length: number of characters in the sentence.
      entities: non-overlapping spans inside [0, length).
      scheme: "bio", "bioes" or "bmes".

    Returns:
      The tag list, e.g. ["B-PER", "I-PER", "O"] for bio.

    Raises:
      ValueError: a span is empty, out of range or overlaps another.
    """
    _check_scheme(scheme)
    inside = "M" if scheme == "bmes" else "I"
    tags = ["O"] * length
    for ent in sorted(entities):
        if not 0 <= ent.start < ent.end <= length:
            raise ValueError(f"entity {ent} is outside a sentence of length {length}")
        if any(tag != "O" for tag in tags[ent.start : ent.end]):
            raise ValueError(f"entity {ent} overlaps another entity")
        t = ent.type
        if scheme == "bio":
            tags[ent.start : ent.end] = [f"B-{t}"] + [f"I-{t}"] * (ent.end - ent.start - 1)
        elif ent.end - ent.start == 1:
            tags[ent.start] = f"S-{t}"
        else:
            middle = [f"{inside}-{t}"] * (ent.end - ent.start - 2)
            tags[ent.start : ent.end] = [f"B-{t}"] + middle + [f"E-{t}"]
    return tags


class TagSet:
    """The model's label vocabulary: tag strings, their ids and the scheme grammar.

    Attributes:
      scheme: "bio" or "bioes".
      types: entity types, sorted so the same corpus always gives the same ids.
      tags: "O" first, then for each type its tags in prefix order (B, I / B, I, E, S).
      tag_to_id: inverse of `tags`.
    """

    def __init__(self, types: Iterable[str], scheme: str = "bio"):
        if scheme not in MODEL_SCHEMES:
            raise ValueError(f"model tag scheme must be one of {MODEL_SCHEMES}, got {scheme!r}")
        types = sorted(set(types))
        for t in types:
            if not isinstance(t, str) or not t or any(c.isspace() for c in t):
                raise ValueError(f"invalid entity type {t!r}")
        self.scheme = scheme
        self.types = types
        self.tags = ["O"] + [f"{p}-{t}" for t in types for p in SCHEME_PREFIXES[scheme]]
        self.tag_to_id = {tag: i for i, tag in enumerate(self.tags)}

    @classmethod
    def from_examples(cls, examples: Iterable[Example], scheme: str = "bio") -> TagSet:
        """Build the tag set covering every entity type in `examples`.

        Args:
          examples: the training examples.
          scheme: "bio" or "bioes".

        Returns:
          A new TagSet.
        """
        return cls({ent.type for ex in examples for ent in ex.entities}, scheme)

    def __len__(self) -> int:
        return len(self.tags)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TagSet) and self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return f"TagSet(types={self.types!r}, scheme={self.scheme!r})"

    def encode(self, example: Example) -> list[int]:
        """Tag ids for every character of `example.text`.

        Args:
          example: a sentence with entity spans.

        Returns:
          A list of ids, len == len(example.text).

        Raises:
          ValueError: an entity type is not in this tag set, or spans are invalid.
        """
        tags = entities_to_tags(len(example.text), example.entities, self.scheme)
        try:
            return [self.tag_to_id[tag] for tag in tags]
        except KeyError as err:
            where = f" in {example.source}" if example.source else ""
            raise ValueError(
                f"tag {err.args[0]!r}{where} is not in the tag set {self.types}"
            ) from None

    def decode(self, ids: Iterable[int]) -> list[Entity]:
        """Entity spans from predicted tag ids (lenient decoding).

        Args:
          ids: one tag id per character (ints or a numpy array).

        Returns:
          Entities sorted by start, end exclusive.
        """
        tags = [self.tags[int(i)] for i in ids]
        return tags_to_entities(tags, self.scheme)[0]

    def allowed_transitions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The scheme's grammar as masks, for constrained Viterbi decoding.

        bio: I-X may follow only B-X or I-X and may not start a sentence; all else is free.
        bioes: after O, E-* or S-* only O, B-* or S-* may come; after B-X or I-X only I-X or
        E-X; a sentence starts with O, B-* or S-* and ends with O, E-* or S-*.

        Returns:
          (transitions bool [K, K] indexed [from, to], allowed_start bool [K],
          allowed_end bool [K]).
        """
        parts = [split_tag(tag) for tag in self.tags]
        k = len(parts)
        trans = np.zeros((k, k), dtype=bool)
        start = np.zeros(k, dtype=bool)
        end = np.zeros(k, dtype=bool)
        for j, (p_to, t_to) in enumerate(parts):
            if self.scheme == "bio":
                start[j] = p_to != "I"
                end[j] = True
            else:
                start[j] = p_to in ("O", "B", "S")
                end[j] = p_to in ("O", "E", "S")
            for i, (p_from, t_from) in enumerate(parts):
                continues = p_to in ("I", "E") if self.scheme == "bioes" else p_to == "I"
                entity_open = p_from in ("B", "I")
                if continues:
                    # Only the same type's open entity may be continued.
                    trans[i, j] = entity_open and t_from == t_to
                elif self.scheme == "bioes":
                    # Anything but a continuation needs the previous entity to be closed.
                    trans[i, j] = not entity_open
                else:
                    trans[i, j] = True
        return trans, start, end

    def to_json(self) -> dict:
        """The dict stored as labels.json in a model directory.

        Returns:
          {"scheme": ..., "types": [...], "tags": [...]}.
        """
        return {"scheme": self.scheme, "types": list(self.types), "tags": list(self.tags)}

    @classmethod
    def from_json(cls, data: dict) -> TagSet:
        """Rebuild a TagSet saved with `to_json`.

        Args:
          data: the labels.json dict.

        Returns:
          The TagSet.

        Raises:
          ValueError: the stored tag order differs from what this code would build, which
            would silently scramble a trained model's output ids.
        """
        tagset = cls(data["types"], data.get("scheme", "bio"))
        if "tags" in data and list(data["tags"]) != tagset.tags:
            raise ValueError(
                f"labels.json tags {data['tags']} do not match the order {tagset.tags} "
                f"built from its types and scheme"
            )
        return tagset


def _check_scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; expected one of {SCHEMES}")
    return scheme
