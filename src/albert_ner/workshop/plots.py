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
# The setting behind that figure (../shared/ARTICLE.md steps 3-4), in the keys of
# `runs.throughput_entry`. The article names no mixed precision and a K80 has no tensor cores,
# so fp32 is assumed.
ARTICLE_THROUGHPUT = {
    "samples_per_sec": ARTICLE_SAMPLES_PER_SEC,
    "device": f"GPU NVIDIA K80 ({ARTICLE_INSTANCE})",
    "model": "ALBERT 12 layers x 768",
    "precision": "fp32",
    "precision_note": "assumed",
    "batch_size": 64,
    "max_seq_length": 128,
}
# What must match for two throughput figures to compare like with like (name on the chart).
THROUGHPUT_CONDITIONS = (("device", "device"), ("model", "model size"), ("precision", "precision"),
                         ("batch_size", "batch/seq"), ("max_seq_length", "batch/seq"))


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


# The article's run: 3 epochs in 2,374 steps of 64 windows, i.e. about 791 steps per epoch.
ARTICLE_STEPS_PER_EPOCH = 2374 / 3


def plot_recipe_curves(results, metric: str = "eval_f", ax=None):
    """Dev curves of full-MSRA recipe runs (`runs.load_recipe_results`) beside the article's.

    The x axis is epochs (passes over MSRA train), the one unit all runs share: the recipes
    use other batch sizes and step counts than the article. Each label carries the run's
    device, training minutes and test entity F1.
    """
    fig, ax = _axes(ax, figsize=(8, 4.5))
    styles = ("-", "--", ":", "-.")
    for i, result in enumerate(results):
        points = [(r["epoch"], r[metric]) for r in result.records if metric in r and "epoch" in r]
        if not points:
            continue
        test = f", test entity F1 {result.test_entity_f1:.3f}" if result.test_entity_f1 is not None else ""
        label = f"{result.name} ({result.device}, {result.minutes:g} min{test})"
        ax.plot(*zip(*points), marker="o", markersize=3, linestyle=styles[i % len(styles)], label=label)
    if metric == "eval_f":
        epochs = [step / ARTICLE_STEPS_PER_EPOCH for step, _ in ARTICLE_CURVE]
        ax.plot(epochs, [v for _, v in ARTICLE_CURVE], color="black", marker="s",
                label="article: ALBERT-base, pretrained, GPU K80 (eval_f)")
    ax.set_xlabel("epoch (passes over MSRA train)")
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"{metric} on MSRA dev: each recipe on CPU vs the article")
    return fig


def throughput_setting(entry: dict) -> str:
    """'device | model | precision | B=.., T=..' for a bar's annotation (unknown parts left out)."""
    parts = [entry.get("device"), entry.get("model")]
    if entry.get("precision"):
        note = f" ({entry['precision_note']})" if entry.get("precision_note") else ""
        parts.append(f"{entry['precision']}{note}")
    if entry.get("batch_size") and entry.get("max_seq_length"):
        parts.append(f"B={entry['batch_size']}, T={entry['max_seq_length']}")
    return " | ".join(p for p in parts if p)


def throughput_differences(entry: dict, reference: dict = ARTICLE_THROUGHPUT) -> list[str]:
    """The conditions (device, model size, precision, batch/seq) in which `entry` differs from
    `reference`; a condition `entry` does not state counts as different."""
    differing = []
    for key, name in THROUGHPUT_CONDITIONS:
        if entry.get(key) != reference.get(key) and name not in differing:
            differing.append(name)
    return differing


def plot_throughput(rates: dict, ax=None):
    """Training samples/s of our runs next to the article's 23 samples/s on ml.p2.xlarge.

    Args:
      rates: {run name: samples/s}, or {run name: entry} with an entry from
        `runs.throughput_entry` (samples_per_sec, device, model, precision, batch_size,
        max_seq_length). Every bar is annotated with its setting, and the title says in
        which conditions the runs differ from the article's, so unlike settings are never
        shown as a like-for-like comparison.
    """
    entries = {name: value if isinstance(value, dict) else {"samples_per_sec": value}
               for name, value in rates.items()}
    entries["article"] = ARTICLE_THROUGHPUT
    fig, ax = _axes(ax, figsize=(9, 1.2 + 0.8 * len(entries)))
    names = list(entries)[::-1]  # top to bottom in the order given, the article last
    values = [entries[n]["samples_per_sec"] or 0.0 for n in names]
    # Thin bars, each with its setting written just above it (never over the value label).
    bars = ax.barh(names, values, height=0.45,
                   color=["#888888" if n == "article" else "#5b8def" for n in names])
    ax.bar_label(bars, labels=[f"{v:.1f}" for v in values], fontsize=8, padding=3)
    for bar, name in zip(bars, names):
        ax.annotate(throughput_setting(entries[name]) or "setting not recorded",
                    (0, bar.get_y() + bar.get_height()), xytext=(2, 2), textcoords="offset points",
                    va="bottom", fontsize=7)
    ax.set_xlim(0, max(values) * 1.15 or 1.0)
    ax.set_ylim(-0.5, len(names) - 0.3)  # room for the top bar's setting line
    ax.set_xlabel("training samples / s")
    differing = sorted({d for n in names if n != "article" for d in throughput_differences(entries[n])})
    if differing:
        ax.set_title(f"Throughput - NOT like for like: {', '.join(differing)} differ from the article's",
                     fontsize=9)
    else:
        ax.set_title("Throughput - same device, model size, precision and batch/seq as the article", fontsize=9)
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
