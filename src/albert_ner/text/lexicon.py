"""Dictionaries for the lexicon features (`model.lexicon`): reading them and turning them into keys.

`--lexicon` takes a word-list file, `jieba` for the dictionary inside the jieba package, or
several of these joined by commas (`jieba,terms.tsv`); `jieba` is the dictionary
(349,046 words with part-of-speech tags, of which nr/nrt/nrfg = person, ns = place, nt =
organisation). Domain users pass their own term lists the same way. One entry per line:

  word                  a word (only the "word" class)
  word<TAB>TYPE         a word of entity type TYPE (any name: PER, DRUG, 公司, …)
  word freq [pos]       jieba's dict.txt / user-dictionary format; freq is ignored

A tag in the jieba form that is all lower-case ASCII letters is a jieba part-of-speech tag:
nr/nrt/nrfg map to PER, ns to LOC, nt to ORG and the others to the "word" class only. Any
other tag is an entity type of its own. Every entry is in the "word" class, so class 0 says
"some dictionary word covers this character" (a word-boundary hint).

Example:
  lexicon = read_lexicon("jieba")
  keys, bits, report = lexicon_arrays(lexicon, tokenizer, max_len=8)
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import numpy as np

JIEBA = "jieba"
WORD_CLASS = "word"
JIEBA_TYPES = {"nr": "PER", "nrt": "PER", "nrfg": "PER", "ns": "LOC", "nt": "ORG"}
MAX_CLASSES = 31  # class bits live in an int32
_POS_TAG = re.compile(r"[a-z]+")
# Pseudo-count in the character profile's type shares (see `character_profile`).
PROFILE_SMOOTHING = 2.0


class LexiconError(ValueError):
    """A lexicon file that cannot be read: says which file, line and what was expected."""


@dataclasses.dataclass
class Lexicon:
    """Words and their class masks (bit c = classes[c]); classes[0] is always "word"."""

    source: str
    classes: tuple[str, ...]
    entries: dict[str, int]


def _jieba_spec():
    import importlib.util

    return importlib.util.find_spec("jieba")


def jieba_installed() -> bool:
    """Whether the jieba package (the default lexicon's dictionary) can be found."""
    return _jieba_spec() is not None


def jieba_dictionary() -> Path:
    """The dict.txt shipped inside the jieba package (read as data; jieba is not imported)."""
    spec = _jieba_spec()
    if spec is None or not spec.submodule_search_locations:
        raise LexiconError(
            "--lexicon jieba needs the jieba package (its dictionary is the word list): "
            "pip install jieba, or pass --lexicon none / a word-list file"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "dict.txt"
    if not path.exists():
        raise LexiconError(f"the jieba package has no dictionary at {path}")
    return path


def _entity_type(tag: str) -> str | None:
    """The class a tag names: an entity type, or None for a plain word (a jieba POS tag)."""
    if _POS_TAG.fullmatch(tag):
        return JIEBA_TYPES.get(tag)
    return tag


def parse_line(line: str, where: str) -> tuple[str, str | None] | None:
    """(word, entity type or None) for one line, None for a blank one; LexiconError if malformed."""
    line = line.strip("\r\n")
    if not line.strip():
        return None
    if "\t" in line:
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise LexiconError(f"{where}: expected 'word<TAB>TYPE', got {line!r}")
        return parts[0].strip(), parts[1].strip()
    parts = line.split()
    if len(parts) == 1:
        return parts[0], None
    if len(parts) == 2:  # "word freq" or "word tag"
        return parts[0], None if parts[1].isdigit() else _entity_type(parts[1])
    if len(parts) == 3 and parts[1].isdigit():
        return parts[0], _entity_type(parts[2])
    raise LexiconError(f"{where}: expected 'word', 'word<TAB>TYPE' or 'word freq [tag]', got {line!r}")


def _read_words(path: Path, typed: dict[str, set[str]]) -> None:
    """Adds one file's words (and their types) to `typed`."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise LexiconError(f"{where}: not UTF-8 ({err.reason} at byte {err.start})") from None
            parsed = parse_line(line.lstrip("\ufeff") if number == 1 else line, where)
            if parsed is None:
                continue
            word, etype = parsed
            types = typed.setdefault(word, set())
            if etype is not None:
                types.add(etype)


def read_lexicon(spec: str | os.PathLike) -> Lexicon:
    """Reads a lexicon: a file, `jieba` for jieba's dictionary, or several joined by commas
    (e.g. "jieba,terms.tsv": a word's types are the union of what the sources say)."""
    typed: dict[str, set[str]] = {}
    for part in str(spec).split(","):
        path = jieba_dictionary() if part.strip() == JIEBA else Path(part.strip())
        if not path.is_file():
            raise LexiconError(f"lexicon file {path} does not exist (or pass --lexicon jieba / none)")
        _read_words(path, typed)
    if not typed:
        raise LexiconError(f"lexicon {spec} holds no words")
    names = sorted({t for types in typed.values() for t in types})
    classes = (WORD_CLASS, *names)
    if len(classes) > MAX_CLASSES:
        raise LexiconError(f"lexicon {spec} names {len(names)} types; at most {MAX_CLASSES - 1} are supported")
    bit = {name: 1 << i for i, name in enumerate(classes)}
    entries = {word: 1 | sum(bit[t] for t in types) for word, types in typed.items()}
    return Lexicon(str(spec), classes, entries)


def lexicon_characters(lexicon: Lexicon) -> set[str]:
    """Every character the lexicon's words use (for extending a vocabulary built from data)."""
    return {char for word in lexicon.entries for char in word}


def lexicon_arrays(lexicon: Lexicon, tokenizer, max_len: int):
    """Sorted unique keys (int64), their class bits (int32) and a one-line report.

    Words of one character or longer than `max_len`, and words with a character the
    vocabulary maps to [UNK], are left out (the report counts them): an [UNK] would make
    the word match any unknown character.
    """
    from albert_ner.model.lexicon import word_key  # TensorFlow: only when keys are built

    table: dict[int, int] = {}
    skipped_length = skipped_unknown = 0
    for word, bits in lexicon.entries.items():
        if not 2 <= len(word) <= max_len:
            skipped_length += 1
            continue
        ids = tokenizer.encode(word)
        if tokenizer.unk_id in ids:
            skipped_unknown += 1
            continue
        key = word_key(ids)
        table[key] = table.get(key, 0) | bits  # words that tokenise alike share one key
    if not table:
        raise LexiconError(f"lexicon {lexicon.source}: no word of 2–{max_len} known characters")
    keys = np.fromiter(sorted(table), np.int64, len(table))
    bits = np.asarray([table[k] for k in keys.tolist()], np.int32)
    counts = ", ".join(
        f"{name} {int(np.count_nonzero(bits & (1 << c)))}" for c, name in enumerate(lexicon.classes)
    )
    report = (
        f"lexicon {lexicon.source}: {len(keys)} words of 2–{max_len} characters ({counts}); "
        f"left out {skipped_length} of other lengths and {skipped_unknown} with characters outside the vocabulary"
    )
    return keys, bits, report


def character_profile(lexicon: Lexicon, tokenizer) -> np.ndarray:
    """How each vocabulary character sits in the lexicon's words, per class (`model.lexicon`).

    Row i, channel c·4 + r, for the words that have character i in role r (B = first, M =
    inside, E = last, S = the whole one-character word): for class 0 ("word", every entry)
    how many there are, as log(1 + count) scaled by the channel's largest value; for an
    entity type, the share of them that are of that type, count_c / (count_word + 2). So every
    channel lies in [0, 1], and 王 reads as "begins many words, a third of them person names".
    Counting words rather than frequencies keeps it to what any word list has. [UNK] and
    characters no word uses get 0.

    Returns:
      float32 [len(vocabulary), 4 · len(lexicon.classes)].
    """
    # One (character id, role, word's class bits) triple per known character of every word.
    ids, roles, word_bits = [], [], []
    for word, bits in lexicon.entries.items():
        encoded = tokenizer.encode(word)
        last = len(encoded) - 1
        for position, i in enumerate(encoded):
            if i == tokenizer.unk_id:
                continue  # the row every unknown character shares says nothing
            ids.append(i)
            roles.append(3 if last == 0 else 0 if position == 0 else 2 if position == last else 1)
            word_bits.append(bits)
    ids, roles, word_bits = np.asarray(ids, np.int64), np.asarray(roles, np.int64), np.asarray(word_bits)
    classes = len(lexicon.classes)
    counts = np.zeros((len(tokenizer.vocab), classes, 4), np.float64)
    for c in range(classes):
        member = (word_bits >> c) & 1 == 1
        np.add.at(counts[:, c, :], (ids[member], roles[member]), 1.0)
    # "word" channels: how common the character is in that role, log(1 + count) scaled into
    # [0, 1]; a type's channels: the share of those words that are of the type, smoothed
    # towards 0 for characters in only a few words.
    profile = np.zeros_like(counts)
    words = counts[:, 0, :]
    scaled = np.log1p(words)
    top = scaled.max(axis=0, keepdims=True)
    profile[:, 0, :] = np.divide(scaled, top, out=np.zeros_like(scaled), where=top > 0)
    profile[:, 1:, :] = counts[:, 1:, :] / (words[:, None, :] + PROFILE_SMOOTHING)
    return profile.reshape(len(tokenizer.vocab), classes * 4).astype(np.float32)
