"""Tables and highlighted text for the notebooks.

Tables are pandas DataFrames (Jupyter renders them; papermill keeps the HTML). Entities are
shown as coloured `<mark>` spans with the type after them, so a glance at a sentence shows
what the model found; `compare_html` puts gold and predicted versions one above the other.

Example:
  from IPython.display import HTML
  HTML(highlight_html("王小明在北京大学读书。", [Entity(0, 3, "PER"), Entity(4, 8, "ORG")]))
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from albert_ner.data.example import Entity, Example

TYPE_COLOURS = {"PER": "#ffd6d6", "LOC": "#d4f5d4", "ORG": "#d6e6ff"}
_FALLBACK_COLOURS = ("#fff2b3", "#ecd9ff", "#ffe0c2", "#d2f3f5", "#f0f0f0")


def colour_for(type_: str) -> str:
    """A stable background colour per entity type."""
    if type_ in TYPE_COLOURS:
        return TYPE_COLOURS[type_]
    return _FALLBACK_COLOURS[sum(map(ord, type_)) % len(_FALLBACK_COLOURS)]


def highlight_html(text: str, entities: Iterable[Entity], label: str | None = None) -> str:
    """One sentence as HTML with each entity marked and its type shown after it.

    Args:
      text: the sentence.
      entities: spans over `text` (sorted or not; overlapping ones are skipped).
      label: optional prefix such as "gold" or "pred".
    """
    parts, pos = [], 0
    for e in sorted(entities):
        if e.start < pos or e.end > len(text):
            continue
        parts.append(html.escape(text[pos:e.start]))
        parts.append(
            f'<mark style="background:{colour_for(e.type)};padding:0 2px;border-radius:3px">'
            f"{html.escape(text[e.start:e.end])}"
            f'<sub style="font-size:70%;color:#555">{html.escape(e.type)}</sub></mark>'
        )
        pos = e.end
    parts.append(html.escape(text[pos:]))
    prefix = f'<span style="color:#888;font-family:monospace">{html.escape(label)}&nbsp;</span>' if label else ""
    return f'<div style="line-height:1.9">{prefix}{"".join(parts)}</div>'


def predictions_html(examples: Iterable[Example]) -> str:
    """Several predicted sentences, one per line."""
    return "\n".join(highlight_html(e.text, e.entities) for e in examples)


def compare_html(gold: Example, pred: Example, title: str | None = None) -> str:
    """Gold and predicted entities of one sentence, one above the other."""
    head = f"<div><b>{html.escape(title)}</b></div>" if title else ""
    return (
        f'<div style="margin-bottom:0.8em">{head}'
        + highlight_html(gold.text, gold.entities, "gold")
        + highlight_html(pred.text, pred.entities, "pred")
        + "</div>"
    )


def legend_html(types: Sequence[str]) -> str:
    return " ".join(
        f'<mark style="background:{colour_for(t)};padding:0 4px">{html.escape(t)}</mark>' for t in types
    )


def show_html(markup: str):
    """Displays HTML in Jupyter (returns the display object; plain string outside IPython)."""
    try:
        from IPython.display import HTML, display
    except ImportError:
        print(markup)
        return markup
    obj = HTML(markup)
    display(obj)
    return obj


# ----------------------------------------------------------------------------- tables


def stats_frame(stats_by_split: dict):
    """`corpus_stats` of several splits side by side (rows: quantities, columns: splits)."""
    import pandas as pd

    rows = {}
    for split, s in stats_by_split.items():
        col = {
            "sentences": s["sentences"],
            "characters": s["characters"],
            "sentences with entities": s["sentences_with_entities"],
            "entities": s["total_entities"],
        }
        col.update({f"  {t}": n for t, n in s["entities"].items()})
        col.update({f"length {k}": v for k, v in s["length"].items()})
        col[f"longer than {s['max_seq_length']}"] = s["longer_than_max_seq_length"]
        rows[split] = col
    return pd.DataFrame(rows)


def entity_counts_frame(stats_by_split: dict):
    """Entities per type (rows) and split (columns)."""
    import pandas as pd

    counts = pd.DataFrame({split: s["entities"] for split, s in stats_by_split.items()}).fillna(0).astype(int)
    return counts.sort_index()


def longest_sentences(examples: Sequence[Example], max_seq_length: int, n: int = 10, preview: int = 60):
    """The n longest sentences: length, windows needed at max_seq_length, entities, text.

    A sentence longer than max_seq_length - 2 characters is split into overlapping windows
    (stride half a window) at training and prediction time; nothing is truncated.
    """
    import pandas as pd

    from albert_ner.text.windows import window_starts

    window = max_seq_length - 2
    stride = max(1, window // 2)
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i].text))[:n]
    rows = []
    for i in order:
        ex = examples[i]
        text = ex.text if len(ex.text) <= preview else ex.text[:preview] + "…"
        rows.append({
            "index": i,
            "length": len(ex.text),
            "over_limit": len(ex.text) > window,
            "windows": len(window_starts(len(ex.text), window, stride)) if ex.text else 0,
            "entities": len(ex.entities),
            "text": text,
        })
    return pd.DataFrame(rows)


def dict_frame(info: dict, key: str = "item", value: str = "value"):
    """A two-column table from a flat dict (e.g. `check_environment()`)."""
    import pandas as pd

    return pd.DataFrame({key: list(info), value: [str(v) for v in info.values()]})
