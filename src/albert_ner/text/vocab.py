"""`Vocab`: the ordered token list of a BERT `vocab.txt`, and a builder for character vocabs.

A token's id is its line number (0-based). Lines are kept exactly as written, only the line
terminator is removed: the Chinese BERT vocab contains whitespace-like tokens such as U+2028
(LINE SEPARATOR) at line 344, which `str.strip()` or `str.splitlines()` would silently destroy
and thereby shift every following id.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterable, Sequence

from albert_ner.text.tokenizer import canonical_char

PAD_TOKEN = "[PAD]"
SPACE_TOKEN = "[unused1]"  # BERT's first reserved slot; we give it to whitespace (see tokenizer)
UNK_TOKEN = "[UNK]"
CLS_TOKEN = "[CLS]"
SEP_TOKEN = "[SEP]"
MASK_TOKEN = "[MASK]"

# Tokens a model directory cannot work without: padding, unknown and the two sentence markers.
REQUIRED_TOKENS = (PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN)
# Head of a vocab made by `Vocab.build`, in BERT's order so the ids look familiar
# ([PAD]=0, [unused1]=1, [UNK]=2, ...), although they are not BERT's numbers.
BUILD_SPECIALS = (PAD_TOKEN, SPACE_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN)


class Vocab:
    """An ordered, duplicate-free list of tokens; id = position.

    Args:
      tokens: the tokens in id order. Each must be unique and free of "\\n" (it could not be
        saved one per line); `REQUIRED_TOKENS` must all be present.

    Raises:
      ValueError: on a duplicate (naming both lines), a token containing a newline, or missing
        special tokens (naming them).
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        self._tokens: tuple[str, ...] = tuple(tokens)
        self._ids: dict[str, int] = {}
        for index, token in enumerate(self._tokens):
            if "\n" in token:
                raise ValueError(f"vocab line {index + 1}: token {token!r} contains a newline")
            if token in self._ids:
                # Silently keeping either copy would shift ids against the checkpoint.
                raise ValueError(
                    f"vocab line {index + 1}: duplicate token {token!r} "
                    f"(first seen on line {self._ids[token] + 1})"
                )
            self._ids[token] = index
        missing = [t for t in REQUIRED_TOKENS if t not in self._ids]
        if missing:
            raise ValueError(f"vocab is missing required special token(s): {', '.join(missing)}")

    # ----------------------------------------------------------------- file format
    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocab:
        """Reads a BERT `vocab.txt` (UTF-8, one token per line, id = line number - 1).

        Args:
          path: the file.

        Returns:
          The vocab. Only "\\n" (or "\\r\\n") ends a line; every other character, including
          U+2028, U+0085 or a lone space, is part of the token.

        Raises:
          ValueError: see `Vocab`; line numbers in messages are 1-based file lines.
        """
        # newline="" disables universal-newline translation, so "\r" and U+2028 stay inside
        # tokens; we split on "\n" only.
        with open(path, encoding="utf-8", newline="") as f:
            content = f.read()
        lines = content.split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # the terminator of the last line, not an empty token
        tokens = [line[:-1] if line.endswith("\r") else line for line in lines]
        return cls(tokens)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the tokens one per line (UTF-8, "\\n"), readable by `load` and by BERT tools.

        Args:
          path: the file to (over)write.
        """
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write("".join(token + "\n" for token in self._tokens))

    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        min_count: int = 1,
        max_size: int | None = None,
        fold_width: bool = True,
    ) -> Vocab:
        """Builds a character vocab from training texts.

        Every character is first mapped to the form `CharTokenizer` would look it up under
        (`canonical_char`: lower-cased, accents stripped, and width-folded when `fold_width`),
        so e.g. "Ａ", "A" and "a" are counted as one entry. Whitespace and control characters
        are not counted: the tokenizer maps them to `[unused1]` / `[UNK]` anyway.

        Args:
          texts: the training sentences.
          min_count: characters seen fewer times are left out (they become `[UNK]`).
          max_size: upper bound on the total size, special tokens included; None = no bound.
          fold_width: must match the `CharTokenizer` that will use the vocab.

        Returns:
          A vocab of `BUILD_SPECIALS` followed by the characters by descending count, ties
          broken by code point, so the same texts always give the same ids.
        """
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        if max_size is not None and max_size < len(BUILD_SPECIALS):
            raise ValueError(f"max_size must be >= {len(BUILD_SPECIALS)}, got {max_size}")
        counts: collections.Counter[str] = collections.Counter()
        for text in texts:
            counts.update(text)  # count raw characters once, canonicalise each distinct one below
        canonical: collections.Counter[str] = collections.Counter()
        for char, count in counts.items():
            form = canonical_char(char, fold_width=fold_width)
            if form is not None:
                canonical[form] += count
        ranked = sorted(
            (c for c, n in canonical.items() if n >= min_count),
            key=lambda c: (-canonical[c], ord(c)),
        )
        if max_size is not None:
            ranked = ranked[: max_size - len(BUILD_SPECIALS)]
        return cls(list(BUILD_SPECIALS) + ranked)

    def extended(self, chars: Iterable[str], fold_width: bool = True) -> Vocab:
        """This vocab with the characters of `chars` it lacks appended, by code point.

        Existing ids keep their values. Characters are canonicalised as in `build`.
        """
        known = set(self._tokens)
        extra = {canonical_char(c, fold_width=fold_width) for c in chars}
        return Vocab(list(self._tokens) + sorted((c for c in extra if c is not None and c not in known), key=ord))

    # ----------------------------------------------------------------- lookups
    @property
    def tokens(self) -> tuple[str, ...]:
        """All tokens in id order."""
        return self._tokens

    @property
    def pad_id(self) -> int:
        return self._ids[PAD_TOKEN]

    @property
    def unk_id(self) -> int:
        return self._ids[UNK_TOKEN]

    @property
    def cls_id(self) -> int:
        return self._ids[CLS_TOKEN]

    @property
    def sep_id(self) -> int:
        return self._ids[SEP_TOKEN]

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._ids

    def token_to_id(self, token: str, default: int | None = None) -> int:
        """The id of `token`.

        Args:
          token: an exact vocab entry (no normalisation; use `CharTokenizer` for text).
          default: returned when the token is absent; None means raise instead.

        Returns:
          The id.

        Raises:
          KeyError: the token is absent and no default was given.
        """
        found = self._ids.get(token)
        if found is not None:
            return found
        if default is None:
            raise KeyError(f"token {token!r} not in vocab")
        return default

    def id_to_token(self, token_id: int) -> str:
        """The token with id `token_id`.

        Args:
          token_id: 0 <= token_id < len(self).

        Returns:
          The token.

        Raises:
          IndexError: the id is out of range (negative ids are rejected, not wrapped).
        """
        if not 0 <= token_id < len(self._tokens):
            raise IndexError(f"token id {token_id} out of range [0, {len(self._tokens)})")
        return self._tokens[token_id]

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)})"
