"""One PNG of the peer comparison: training samples/s (train_step.json) and tagging chars/s
with entity F1 (inference.json), both written by the scripts beside this one.

  .venv/bin/python benchmarks/plot_peers.py --dir benchmarks/results/peers   # → DIR/peers.png

Either JSON may be missing; its panel then says so.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

OURS_COLOR, PEER_COLOR = "#1f77b4", "#ff7f0e"


def load(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def plot_training(ax, report: dict | None) -> None:
    """Grouped bars: per (model, precision), ours vs HF median samples/s; ratio above."""
    if not report or not report["results"]:
        ax.text(0.5, 0.5, "no train_step.json", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    results = report["results"]
    width = 0.38
    top = 0.0
    for i, r in enumerate(results):
        group_top = 0.0
        for offset, side, color, label in ((-width / 2, "ours", OURS_COLOR, "albert-ner (TF)"),
                                           (width / 2, "theirs", PEER_COLOR, "HF transformers (torch)")):
            value = (r[side] or {}).get("samples_per_sec_median")
            if value is None:
                continue
            ax.bar(i + offset, value, width, color=color, label=label if i == 0 else None)
            ax.annotate(f"{value:.1f}", (i + offset, value), ha="center", va="bottom", fontsize=8)
            group_top = max(group_top, value)
        top = max(top, group_top)
        if r["ratio_ours_over_theirs"] is not None:
            ax.annotate(f"ours/HF ×{r['ratio_ours_over_theirs']:.2f}", (i, group_top), xytext=(0, 14),
                        textcoords="offset points", ha="center", fontsize=9, weight="bold")
    ax.set_xticks(range(len(results)), [f"{r['model']}\n{r['precision']}" for r in results], fontsize=9)
    ax.set_ylim(0, top * 1.3 or 1)
    ax.set_ylabel("training samples/s (median of rounds)")
    s = report["settings"]
    ax.set_title(f"Training step, batch {s['batch_size']} × {s['seq_len']} tokens, CRF head\n"
                 f"({s['threads']} threads per side)", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")


def plot_inference(ax, report: dict | None) -> None:
    """Horizontal bars: chars/s per tool, annotated with entity F1 (or why there is none)."""
    if not report or not report["tools"]:
        ax.text(0.5, 0.5, "no inference.json", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    from matplotlib.ticker import FuncFormatter

    tools = report["tools"]
    names = [t["name"] for t in tools]
    values = [t["chars_per_sec"] for t in tools]
    colors = [OURS_COLOR if t["kind"] == "ours" else PEER_COLOR for t in tools]
    y = list(range(len(tools)))[::-1]  # first tool on top
    ax.barh(y, values, color=colors)
    top = max(values)
    for yi, t, v in zip(y, tools, values):
        note = f"F1 {t['entity_f1']:.3f}" if t["entity_f1"] is not None else "random weights (speed only)"
        ax.annotate(f" {v:,.0f} chars/s · {note}", (v, yi), va="center", fontsize=8)
    ax.set_yticks(y, names, fontsize=9)
    # Tools differ by up to 100×: a log axis keeps the slow ones visible (values are printed).
    if top / max(min(values), 1e-9) > 20:
        ax.set_xscale("log")
        ax.set_xlim(min(values) / 2, top * 30)
    else:
        ax.set_xlim(0, top * 1.9)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_xlabel("characters tagged per second (median of rounds)" + (", log scale" if ax.get_xscale() == "log" else ""))
    s = report["settings"]
    ax.set_title(f"Tagging the MSRA test set ({s['sentences']:,} sentences), "
                 f"CPUs {','.join(map(str, s['cpus']))}\n(blue: this project, orange: peers)", fontsize=10)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default="benchmarks/results/peers",
                        help="folder with train_step.json and/or inference.json; peers.png goes there")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(args.dir)
    train, infer = load(folder / "train_step.json"), load(folder / "inference.json")
    if train is None and infer is None:
        raise SystemExit(f"error: neither train_step.json nor inference.json in {folder}")
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1, 1.3]})
    plot_training(left, train)
    plot_inference(right, infer)
    machine = (train or infer)["machine"]
    fig.suptitle(f"albert-ner vs peers — {machine['cpu_model']}, {machine['cpus_online']} CPUs, "
                 f"{machine['date_utc'][:10]}", fontsize=11)
    fig.tight_layout()
    target = folder / "peers.png"
    fig.savefig(target, dpi=110)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
