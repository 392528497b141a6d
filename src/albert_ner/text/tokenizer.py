"""`CharTokenizer`: one character of text = one token id, in Python and in the TF graph.

NER labels characters, so the tokenizer never merges, splits or drops one: `encode(text)` has
exactly `len(text)` ids and entity offsets need no alignment. Each character is mapped alone,
first rule that applies wins:

  1. whitespace (`str.isspace()`: space, tab, U+3000, NBSP, U+2028, ...) -> `[unused1]` if the
     vocab has it, else `[UNK]`; other control/format/unassigned/private-use characters
     (Unicode category C*) -> `[UNK]`. BERT deletes both kinds; we must keep the position.
  2. the character itself, if it is a vocab token;
  3. BERT's uncased normalisation (`bert_normalize`: lower-case, NFD, drop combining marks
     Mn), if that leaves a single character in the vocab;
  4. only with `fold_width=True`: NFKC first (full-width "Ａ１，" -> "A1,", super/subscripts,
     circled letters and other compatibility forms), then step 3's normalisation, same
     condition. BERT leaves such characters to [UNK] (e.g. "⁴", "Ⓐ", "ℓ");
  5. `[UNK]`.

With `fold_width=False` this equals Google BERT's BasicTokenizer(do_lower_case=True) +
WordPiece on a one-character input whenever BERT returns exactly one id. The documented
exceptions are the characters BERT returns *no* id for (whitespace, controls, U+FFFD and lone
combining marks: we return `[unused1]`/`[UNK]` so the position survives) and the characters
BERT splits into several ids (Hangul syllables decompose into 2-3 jamo pieces under NFD: one
position cannot hold several ids, so they are `[UNK]` unless the syllable itself is a token).
For the Chinese BERT vocab, step 2 never disagrees with step 3 (no token is changed by BERT's
normalisation), so the order of 2 and 3 only matters for cased vocabs.

The serving graph cannot run Python's `unicodedata`, and TF Serving ships only core TF ops
(no tensorflow-text, no ICU normalisers). Rather than re-implementing lower-casing, NFD and
NFKC with graph ops, we enumerate every code point once (`codepoint_table`), save the non-UNK
(code point, id) pairs as a SavedModel asset, and look code points up in a hash table
(`make_codepoint_lookup` + `tf_encode`). Because the mapping is per character, the table
reproduces `encode` exactly.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: vocab.py imports this module at run time
    import tensorflow as tf

    from albert_ner.text.vocab import Vocab

SPACE_TOKEN = "[unused1]"
# Code points enumerated by `codepoint_table`: planes 0-2 (BMP, SMP, CJK Extension B-F and
# compatibility ideographs). Planes 3+ hold only CJK Extension G/H, tags, variation selectors
# and private use; they are enumerated too only if the vocab has such a single-character token.
TABLE_LIMIT = 0x30000
SURROGATES = range(0xD800, 0xE000)
# Key of the first line of a code-point table file: its value is the id of every code point
# the file does not list (the `[UNK]` id). -1 is never a code point, so the line is harmless
# when the whole file is loaded into a hash table.
DEFAULT_KEY = -1


def bert_normalize(text: str) -> str:
    """BERT's uncased normalisation: lower-case, NFD, drop non-spacing marks (category Mn).

    Args:
      text: any string (usually one character).

    Returns:
      The normalised string; it can be longer (Hangul "가" -> 2 jamo) or empty (a lone
      combining accent).
    """
    decomposed = unicodedata.normalize("NFD", text.lower())
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn")


def _is_blank_or_control(char: str) -> bool:
    """True for the characters rule 1 handles (whitespace or any category C*)."""
    return char.isspace() or unicodedata.category(char)[0] == "C"


def _single(text: str) -> str | None:
    """`text` if it is one ordinary character, else None.

    A normalised form that is whitespace or a control (e.g. NFKC("´") == " \\u0301" ->
    " ") is not a meaningful stand-in for a visible character, so it is rejected.
    """
    if len(text) == 1 and not _is_blank_or_control(text):
        return text
    return None


def canonical_char(char: str, fold_width: bool = True) -> str | None:
    """The form under which `Vocab.build` counts a character.

    Args:
      char: one character.
      fold_width: as in `CharTokenizer`.

    Returns:
      None for whitespace/control characters (never vocab entries); otherwise the width-folded
      normalised form (if `fold_width` and it is one character), else the BERT-normalised form
      (if one character), else the character itself. `CharTokenizer` finds any of these.
    """
    if _is_blank_or_control(char):
        return None
    if fold_width:
        folded = _single(bert_normalize(unicodedata.normalize("NFKC", char)))
        if folded is not None:
            return folded
    normalised = _single(bert_normalize(char))
    return normalised if normalised is not None else char


class CharTokenizer:
    """Maps each character of a text to one vocab id (see the module docstring for the rules).

    Args:
      vocab: the `Vocab` (a BERT vocab.txt or one made by `Vocab.build`).
      fold_width: apply rule 4 (NFKC width folding). False = BERT's ids exactly, except for
        the documented whitespace/control/multi-piece cases.
    """

    def __init__(self, vocab: Vocab, fold_width: bool = True) -> None:
        self.vocab = vocab
        self.fold_width = fold_width
        self.unk_id = vocab.unk_id
        self.space_id = vocab.token_to_id(SPACE_TOKEN, default=vocab.unk_id)
        # Characters above every single-character token and above TABLE_LIMIT are [UNK]
        # outright. This is what Unicode gives anyway (nothing there normalises into planes
        # 0-2), and stating it makes the graph table exact by construction.
        max_single = max((ord(t) for t in vocab.tokens if len(t) == 1), default=0)
        self.table_limit = max(TABLE_LIMIT, max_single + 1)
        self._cache: dict[str, int] = {}

    # ----------------------------------------------------------------- Python side
    def _resolve(self, char: str) -> int:
        """Applies rules 1-5 to one character (uncached)."""
        if char.isspace():
            return self.space_id
        if ord(char) >= self.table_limit or unicodedata.category(char)[0] == "C":
            return self.unk_id
        lookup = self.vocab.token_to_id
        found = lookup(char, -1)
        if found >= 0:
            return found
        normalised = _single(bert_normalize(char))
        if normalised is not None:
            found = lookup(normalised, -1)
            if found >= 0:
                return found
        if self.fold_width:
            folded = _single(bert_normalize(unicodedata.normalize("NFKC", char)))
            if folded is not None:
                found = lookup(folded, -1)
                if found >= 0:
                    return found
        return self.unk_id

    def id_of(self, char: str) -> int:
        """The id of one character.

        Args:
          char: a string of length 1.

        Returns:
          Its vocab id (`[UNK]` when no rule finds it).
        """
        if len(char) != 1:
            raise ValueError(f"id_of expects one character, got {char!r}")
        found = self._cache.get(char)
        if found is None:
            found = self._cache[char] = self._resolve(char)
        return found

    def encode(self, text: str) -> list[int]:
        """Ids of every character of `text`; `len(result) == len(text)` always.

        Args:
          text: the sentence.

        Returns:
          One id per character, no [CLS]/[SEP] (the model adds those).
        """
        cache = self._cache
        out = []
        for char in text:
            found = cache.get(char)
            if found is None:
                found = cache[char] = self._resolve(char)
            out.append(found)
        return out

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        """`encode` for each text.

        Args:
          texts: the sentences.

        Returns:
          One id list per text.
        """
        return [self.encode(text) for text in texts]

    # ----------------------------------------------------------------- graph table
    def codepoint_table(self) -> list[tuple[int, int]]:
        """Every (code point, id) whose id is not `[UNK]`, in code-point order.

        Enumerates range(0, self.table_limit) minus surrogates (they never occur in a valid
        str or in decoded UTF-8). Everything not listed is `[UNK]`, the lookup default.

        Returns:
          The pairs; about 190k code points are visited, which takes a second or two.
        """
        unk = self.unk_id
        resolve = self._resolve
        pairs = []
        for cp in range(self.table_limit):
            if cp in SURROGATES:
                continue
            found = resolve(chr(cp))
            if found != unk:
                pairs.append((cp, found))
        return pairs

    def write_codepoint_table(self, path: str | os.PathLike) -> None:
        """Writes `codepoint_table()` as "codepoint<TAB>id" lines (decimal).

        The first line is "-1<TAB>unk_id" (`DEFAULT_KEY`): the id of every unlisted code
        point, so the file alone describes the mapping.

        Args:
          path: the file to (over)write, e.g. the SavedModel's assets/codepoints.tsv.
        """
        lines = [f"{DEFAULT_KEY}\t{self.unk_id}\n"]
        lines.extend(f"{cp}\t{token_id}\n" for cp, token_id in self.codepoint_table())
        with open(path, "w", encoding="ascii", newline="") as f:
            f.writelines(lines)


def load_codepoint_table(path: str | os.PathLike) -> dict[int, int]:
    """Reads a file written by `CharTokenizer.write_codepoint_table`.

    Args:
      path: the file.

    Returns:
      {code point: id}, plus `DEFAULT_KEY` (-1) -> the `[UNK]` id used for every code point
      not in the dict: `table.get(cp, table[DEFAULT_KEY])` reproduces `CharTokenizer.id_of`.
    """
    table = {}
    with open(path, encoding="ascii") as f:
        for line_no, line in enumerate(f, start=1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 2:
                raise ValueError(f"{path}:{line_no}: expected 'codepoint<TAB>id', got {line!r}")
            table[int(fields[0])] = int(fields[1])
    if DEFAULT_KEY not in table:
        raise ValueError(f"{path}: no default line '{DEFAULT_KEY}<TAB>unk_id'")
    return table


def _read_default_id(path: str | os.PathLike) -> int:
    """The `[UNK]` id from the first line of a code-point table file."""
    with open(path, encoding="ascii") as f:
        key, _, value = f.readline().rstrip("\n").partition("\t")
    if key != str(DEFAULT_KEY):
        raise ValueError(f"{path}: first line must be '{DEFAULT_KEY}<TAB>unk_id'")
    return int(value)


def make_codepoint_lookup(
    path: str | os.PathLike, unk_id: int | None = None
) -> tf.lookup.StaticHashTable:
    """A code point -> id hash table initialised from a `write_codepoint_table` file.

    Uses `tf.lookup.TextFileInitializer`, so when the table is attached to a tf.Module the
    file is tracked and copied as a SavedModel asset.

    Args:
      path: the table file.
      unk_id: the default for unlisted code points; None = read it from the file's first line.

    Returns:
      A StaticHashTable int64 -> int64.
    """
    import tensorflow as tf  # lazy: keeps `import albert_ner.text` free of TF start-up cost

    if unk_id is None:
        unk_id = _read_default_id(path)
    initializer = tf.lookup.TextFileInitializer(
        filename=os.fspath(path),
        key_dtype=tf.int64,
        key_index=0,
        value_dtype=tf.int64,
        value_index=1,
        delimiter="\t",
    )
    return tf.lookup.StaticHashTable(initializer, default_value=tf.constant(unk_id, tf.int64))


def tf_encode(texts: tf.Tensor, table: tf.lookup.StaticHashTable) -> tf.RaggedTensor:
    """In-graph twin of `CharTokenizer.encode`, core TF ops only.

    Args:
      texts: string tensor [B] of UTF-8 sentences.
      table: from `make_codepoint_lookup`.

    Returns:
      int32 RaggedTensor [B, (chars)]: one id per code point. Invalid UTF-8 is decoded with
      errors="replace" (U+FFFD, which maps to `[UNK]`) instead of failing the request, so
      every valid character keeps its position; callers should send valid UTF-8 since the
      number of U+FFFD per bad byte run is TF's choice, not Python's.
    """
    import tensorflow as tf  # lazy, see make_codepoint_lookup

    codepoints = tf.strings.unicode_decode(
        texts, input_encoding="UTF-8", errors="replace", replacement_char=0xFFFD
    )
    ids = table.lookup(tf.cast(codepoints.flat_values, tf.int64))
    return codepoints.with_flat_values(tf.cast(ids, tf.int32))
