"""Unlabelled text for pretraining: files in, model-sized pieces of text out.

Inputs (`--text-file`, repeatable; a directory means every non-hidden file under it):
  * plain text, UTF-8, one document or sentence per line;
  * the text side of any labelled corpus `read_corpus` reads (CoNLL, JSON lines, Ground
    Truth manifests): the labels are ignored.
`detect_text_format` tells them apart (`--text-format` overrides it).

Every line becomes pieces of at most `window` characters (max_seq_length - 2): a longer line
is cut into sentences after 。！？；… (plus any closing quotes or brackets that follow), and
consecutive sentences are packed greedily into pieces, so pieces keep whole sentences and
are as long as the window allows. A single sentence longer than the window is cut hard.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from albert_ner.data.errors import DataError
from albert_ner.data.readers import read_text

TEXT_FORMATS = ("auto", "text", "corpus")
# Characters that end a Chinese sentence, and those that may follow the end and still
# belong to the sentence (closing quotes and brackets).
SENTENCE_ENDS = "。！？；…!?;"
CLOSERS = "”’」』）》〉】〕\"')]"
_SENTENCE = re.compile(f"[^{re.escape(SENTENCE_ENDS)}]*[{re.escape(SENTENCE_ENDS)}]+[{re.escape(CLOSERS)}]*|.+$")
# A CoNLL line: a token, whitespace, a tag such as O, B-PER, M-LOC, S-ORG.
_CONLL_LINE = re.compile(r"^\S+[\t ]+(O|[BIEMSL]-\S+|[BIEMS])$")
CORPUS_EXTENSIONS = (".json", ".jsonl", ".manifest")


def split_sentences(text: str) -> list[str]:
    """Cuts text after each sentence end (。！？；… and ASCII !?;) and its closing quotes.

    Args:
      text: one line.
    Returns:
      the sentences, in order; "".join(result) == text.
    """
    return [m.group(0) for m in _SENTENCE.finditer(text) if m.group(0)]


def pack_pieces(sentences: list[str], window: int) -> list[str]:
    """Packs consecutive sentences into pieces of at most `window` characters.

    A sentence longer than the window is cut into window-sized chunks (its own pieces).
    """
    pieces, current = [], ""
    for sentence in sentences:
        if len(sentence) > window:
            if current:
                pieces.append(current)
                current = ""
            pieces.extend(sentence[i : i + window] for i in range(0, len(sentence), window))
            continue
        if len(current) + len(sentence) > window:
            pieces.append(current)
            current = ""
        current += sentence
    if current:
        pieces.append(current)
    return pieces


def line_pieces(line: str, window: int) -> list[str]:
    """A line as pieces of at most `window` characters (whole sentences where possible)."""
    if len(line) <= window:
        return [line] if line else []
    return [p for p in pack_pieces(split_sentences(line), window) if p.strip()]


# ---------------------------------------------------------------------------- files
def expand_paths(paths: list[str | os.PathLike]) -> list[Path]:
    """`--text-file` values → files: a directory stands for its non-hidden files, sorted."""
    files = []
    for value in paths:
        path = Path(value)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                raise DataError(path, None, "directory holds no text files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"--text-file {value}: no such file or directory")
    return files


def detect_text_format(path: Path, text: str) -> str:
    """"corpus" for a labelled file `read_corpus` reads, "text" for plain text.

    JSON-lines extensions, a first line that is a JSON object, or first lines that all look
    like `TOKEN<TAB>TAG` mean a corpus.
    """
    if path.name.lower().endswith(CORPUS_EXTENSIONS):
        return "corpus"
    lines = [line.strip() for line in text.splitlines() if line.strip()][:20]
    if not lines:
        return "text"
    try:
        if isinstance(json.loads(lines[0]), dict):
            return "corpus"
    except ValueError:
        pass
    return "corpus" if all(_CONLL_LINE.match(line) for line in lines) else "text"


def read_text_file(path: Path, text_format: str = "auto") -> list[str]:
    """The lines (or corpus sentences) of one file, stripped, blank ones left out.

    Raises:
      DataError: not UTF-8, empty, or (for a corpus) malformed, naming file and line.
    """
    if text_format not in TEXT_FORMATS:
        raise ValueError(f"text format must be one of {', '.join(TEXT_FORMATS)}, got {text_format!r}")
    text = read_text(os.fspath(path))
    kind = detect_text_format(path, text) if text_format == "auto" else text_format
    if kind == "corpus":
        from albert_ner.data.readers import read_corpus

        lines = [e.text.strip() for e in read_corpus(path).examples]
    else:
        lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise DataError(path, None, "holds no text (the file is empty or only blank lines)")
    return lines


def read_texts(paths: list[str | os.PathLike], text_format: str = "auto") -> tuple[list[str], list[str]]:
    """Every line of every file, in order; plus one summary line per file for the log."""
    lines, summaries = [], []
    for path in expand_paths(paths):
        found = read_text_file(path, text_format)
        lines.extend(found)
        summaries.append(f"{path}: {len(found)} lines, {sum(map(len, found))} characters")
    return lines, summaries
