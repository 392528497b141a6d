"""Mention replacement: more training sentences from the ones you have and a typed lexicon.

A small labelled set shows each entity type through a few hundred names; a lexicon lists tens
of thousands. `replace_mentions` copies every training sentence with each entity whose type the
lexicon knows (same name, e.g. PER) swapped for a random lexicon word of that type and of the
same length, so the copy reads like the original and its labels stay exact. The model then
meets many more names in the same contexts, and sees the lexicon's typed channel fire on them.

Example:
  extra = replace_mentions(examples, lexicon, copies=1, seed=42)
  examples = examples + extra
"""

from __future__ import annotations

import random

from albert_ner.data.example import Entity, Example

# Probability that a replaceable mention is swapped in a copy (see the module doc).
REPLACE_SHARE = 0.3


def words_by_type_and_length(lexicon) -> dict[tuple[str, int], list[str]]:
    """{(type, length): sorted words} for every entity type (class other than "word")."""
    table: dict[tuple[str, int], list[str]] = {}
    for c, name in enumerate(lexicon.classes):
        if c == 0:
            continue
        for word, bits in lexicon.entries.items():
            if bits & (1 << c):
                table.setdefault((name, len(word)), []).append(word)
    return {key: sorted(words) for key, words in table.items()}


def replace_mentions(examples: list[Example], lexicon, copies: int, seed: int,
                     share: float = REPLACE_SHARE) -> list[Example]:
    """`copies` new sentences per example that has a replaceable entity (see the module doc).

    Each replaceable mention is swapped with probability `share`. Deterministic for a given
    seed. Sentences without a replaceable entity get no copy.
    """
    pools = words_by_type_and_length(lexicon)
    rng = random.Random(seed)
    out = []
    for _ in range(copies):
        for example in examples:
            if not any((e.type, e.end - e.start) in pools for e in example.entities):
                continue
            # Same length, so every offset (and so every label) stays where it was.
            chars = list(example.text)
            for entity in example.entities:
                pool = pools.get((entity.type, entity.end - entity.start))
                if pool and rng.random() < share:
                    chars[entity.start:entity.end] = rng.choice(pool)
            entities = [Entity(e.start, e.end, e.type) for e in example.entities]
            out.append(Example("".join(chars), entities, source=f"{example.source} (mentions replaced)"))
    return out
