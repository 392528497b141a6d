"""Figures for the notebooks: corpus statistics, training curves, the article's curve.

Every function draws on a new figure (or the `ax` given) and returns the matplotlib Figure;
`save_figure` writes it as PNG so later notebooks and tests can check it exists. Labels are
in English: matplotlib's default fonts have no CJK glyphs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

# The article's published dev curve (MSRA, ALBERT-base, 3 epochs, batch 64, ml.p2.xlarge):
# its script's `eval_f`, a token-level macro F1 over the B-/I- tags, not entity-level F1.
ARTICLE_CURVE = ((0, 0.01672), (1000, 0.9256), (2000, 0.9444), (2374, 0.948345))
ARTICLE_FINAL = {"eval_f": 0.948345, "eval_precision": 0.9543, "eval_recall": 0.9426, "loss": 10.52}
ARTICLE_SAMPLES_PER_SEC = 23.0
ARTICLE_INSTANCE = "ml.p2.xlarge"


def _axes(ax=None, figsize=(7, 4)):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    return ax.figure, ax


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Writes the figure as PNG (parent directories created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def plot_entity_counts(stats_by_split: dict, ax=None):
    """Grouped bars: entities per type for each split."""
    import numpy as np

    fig, ax = _axes(ax)
    types = sorted({t for s in stats_by_split.values() for t in s["entities"]})
    x = np.arange(len(types))
    width = 0.8 / max(len(stats_by_split), 1)
    for i, (split, s) in enumerate(stats_by_split.items()):
        counts = [s["entities"].get(t, 0) for t in types]
        bars = ax.bar(x + i * width, counts, width, label=split)
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks(x + width * (len(stats_by_split) - 1) / 2, types)
    ax.set_ylabel("entities")
    ax.set_title("Entities per type")
    ax.legend()
    return fig


def plot_length_histogram(lengths: Sequence[int], max_seq_length: int, ax=None, bins: int = 40):
    """Sentence lengths in characters, with the model's window (max_seq_length - 2) marked."""
    fig, ax = _axes(ax)
    ax.hist(lengths, bins=bins, color="#5b8def")
    window = max_seq_length - 2
    over = sum(1 for n in lengths if n > window)
    ax.axvline(window, color="#d33", linestyle="--",
               label=f"window {window} chars ({over} longer, split into windows)")
    ax.set_xlabel("sentence length (characters)")
    ax.set_ylabel("sentences")
    ax.set_title("Sentence lengths")
    ax.legend()
    return fig


def plot_training(records: Sequence[dict], ax=None, title: str = "Dev scores during training"):
    """One run: eval_f (token macro) and entity F1 per step, loss on a second axis."""
    fig, ax = _axes(ax)
    steps = [r["step"] for r in records]
    for key, label in (("eval_f", "eval_f (token-level macro, article)"), ("entity_f1", "entity F1 (exact match, micro)")):
        if records and key in records[0]:
            ax.plot(steps, [r[key] for r in records], marker="o", label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("F1 on dev")
    ax.set_ylim(0, 1.02)
    loss_ax = ax.twinx()
    loss_ax.plot(steps, [r["loss"] for r in records], color="#999", linestyle=":", label="train loss")
    loss_ax.set_ylabel("train loss (mean since last eval)")
    handles, labels = ax.get_legend_handles_labels()
    h2, l2 = loss_ax.get_legend_handles_labels()
    ax.legend(handles + h2, labels + l2, loc="center right", fontsize=8)
    ax.set_title(title)
    return fig


def plot_curves(runs: dict, metric: str = "eval_f", article: bool = True, ax=None, title: str | None = None):
    """Several runs' dev curves of one metric on one figure, optionally with the article's.

    Args:
      runs: {run name: metrics records (dicts with "step" and `metric`)}.
      metric: "eval_f" (comparable with the article) or "entity_f1".
      article: add the article's published eval_f curve (only meaningful for eval_f).
    The x axis turns logarithmic (symlog) when the runs are much shorter than the article's
    2,374 steps, so both stay readable.
    """
    fig, ax = _axes(ax, figsize=(8, 4.5))
    longest = 1
    styles = ("-", "--", ":", "-.")
    for i, (name, records) in enumerate(runs.items()):
        points = [(r["step"], r[metric]) for r in records if metric in r]
        if not points:
            continue
        longest = max(longest, points[-1][0])
        ax.plot(*zip(*points), marker="o", markersize=3, linestyle=styles[i % len(styles)], label=name)
    if article:
        steps, values = zip(*ARTICLE_CURVE)
        ax.plot(steps, values, color="black", marker="s", label="article (ALBERT-base, MSRA, eval_f)")
        if ARTICLE_CURVE[-1][0] > 10 * longest:
            ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or f"{metric} on dev per step")
    return fig


def plot_throughput(rates: dict, ax=None):
    """Training samples/s of our runs next to the article's 23 samples/s on ml.p2.xlarge."""
    fig, ax = _axes(ax, figsize=(7, 3))
    names = list(rates) + [f"article ({ARTICLE_INSTANCE}, ALBERT-base)"]
    values = list(rates.values()) + [ARTICLE_SAMPLES_PER_SEC]
    bars = ax.barh(names, values, color=["#5b8def"] * len(rates) + ["#444"])
    ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xlabel("training samples / s")
    ax.set_title("Throughput")
    return fig


def plot_mlm_curve(records: Sequence[dict], axes=None):
    """Masked-LM pretraining: held-out MLM loss and accuracy per evaluation (metrics.jsonl)."""
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    fig = axes[0].figure
    steps = [r["step"] for r in records]
    axes[0].plot(steps, [r.get("mlm_loss", r["loss"]) for r in records], marker="o", label="held-out")
    axes[0].plot(steps, [r["loss"] for r in records], marker=".", alpha=0.6, label="training")
    axes[0].set_ylabel("MLM loss (cross-entropy)")
    axes[0].legend()
    axes[1].plot(steps, [r.get("mlm_accuracy", float("nan")) for r in records], marker="o", color="#e4572e")
    axes[1].set_ylabel("held-out MLM accuracy")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle("Masked-LM pretraining on the training text")
    return fig
