"""A registry of training runs shared by the notebooks, and the metrics of every run.

Each route that trains (02 on the notebook instance, 03 BYOC, 04 BYOS, any real SageMaker
job) records itself as WORKSPACE/runs/<name>/run.json pointing at its model directory (or at a
`model.tar.gz` that SageMaker produced, unpacked on first use). Notebook 05 reads them all.

Example:
  record_run(workspace, "02_notebook", route="notebook", model_dir=model_dir, seed=42)
  for run in load_runs(workspace):
      print(run.name, run.records[-1]["entity_f1"])
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import tarfile
import time
from pathlib import Path

from albert_ner.model_dir import ModelDir

RUNS_DIR = "runs"
RUN_FILE = "run.json"
MODEL_ARTIFACT = "model.tar.gz"
CURVE_METRICS = ("eval_f", "entity_f1")


@dataclasses.dataclass
class Run:
    """One recorded run: where its model directory is and what it was."""

    name: str
    route: str
    model_dir: Path
    info: dict

    @property
    def records(self) -> list[dict]:
        """The run's metrics.jsonl, one dict per evaluation."""
        return ModelDir(self.model_dir).read_metrics()

    @property
    def final(self) -> dict:
        path = ModelDir(self.model_dir).final_metrics
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def runs_root(workspace: str | os.PathLike) -> Path:
    return Path(workspace) / RUNS_DIR


def run_dir(workspace: str | os.PathLike, name: str) -> Path:
    """WORKSPACE/runs/<name>/ (created)."""
    path = runs_root(workspace) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def record_run(workspace: str | os.PathLike, name: str, route: str, model_dir: str | os.PathLike, **info) -> Path:
    """Writes WORKSPACE/runs/<name>/run.json.

    Args:
      name: unique run name, e.g. "02_notebook".
      route: "notebook", "byoc", "byos", "sagemaker-job", ...
      model_dir: the model directory, or a directory holding SageMaker's model.tar.gz.
      info: anything else worth keeping (parameters, job name, samples/s); JSON-serialisable.
    """
    path = run_dir(workspace, name) / RUN_FILE
    record = {"name": name, "route": route, "model_dir": str(Path(model_dir).resolve()),
              "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
    path.write_text(json.dumps(record, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def unpack_model_artifact(archive: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Extracts a SageMaker `model.tar.gz` (the /opt/ml/model tree) into `target`."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return target


def _resolve_model_dir(path: Path) -> Path:
    """A model directory as is; a directory with only model.tar.gz gets it unpacked first."""
    if ModelDir(path).metrics.exists():
        return path
    archive = path / MODEL_ARTIFACT if path.is_dir() else path
    if archive.name == MODEL_ARTIFACT and archive.exists():
        unpacked = archive.parent / "model"
        if not ModelDir(unpacked).metrics.exists():
            unpack_model_artifact(archive, unpacked)
        return unpacked
    return path


def load_runs(workspace: str | os.PathLike) -> list[Run]:
    """Every recorded run under WORKSPACE/runs, sorted by name, with metrics available."""
    runs = []
    root = runs_root(workspace)
    for path in sorted(root.glob(f"*/{RUN_FILE}")) if root.exists() else []:
        info = json.loads(path.read_text(encoding="utf-8"))
        model_dir = _resolve_model_dir(Path(info.pop("model_dir")))
        runs.append(Run(info.pop("name"), info.pop("route", "?"), model_dir, info))
    return runs


def curves(runs: list[Run], metric: str = "eval_f") -> dict:
    """{run name: records} with only runs that report `metric`."""
    return {r.name: r.records for r in runs if r.records and metric in r.records[-1]}


def curves_frame(runs: list[Run], metrics=CURVE_METRICS):
    """Long table: run, route, step, metric, value."""
    import pandas as pd

    rows = [
        {"run": run.name, "route": run.route, "step": rec["step"], "metric": m, "value": rec[m]}
        for run in runs for rec in run.records for m in metrics if m in rec
    ]
    return pd.DataFrame(rows, columns=["run", "route", "step", "metric", "value"])


def throughput(records: list[dict]) -> float | None:
    """Median training samples/s over the evaluation intervals of a run."""
    rates = [r["samples_per_sec"] for r in records if r.get("samples_per_sec")]
    return statistics.median(rates) if rates else None


def model_shape(encoder: dict, lstm_units: int | None = None) -> str:
    """A model's size in a few words: 'ALBERT 12 layers x 768' or 'chars BiLSTM(128)-CRF, emb 128'."""
    kind = encoder.get("model_type", "albert")
    if kind == "chars":
        return f"chars BiLSTM({lstm_units or 0})-CRF, emb {encoder.get('hidden_size')}"
    shape = f"{kind.upper()} {encoder.get('num_hidden_layers')} layers x {encoder.get('hidden_size')}"
    return shape + (f" + BiLSTM({lstm_units})" if lstm_units else "")


def throughput_entry(model_dir: str | os.PathLike, samples_per_sec: float | None = None,
                     device: str | None = None) -> dict:
    """A run's throughput and the conditions it was measured in, for `plots.plot_throughput`.

    Args:
      model_dir: a model directory written by `train` (its model_config.json and
        training_args.json say the model size, precision used and batch/seq).
      samples_per_sec: the run's rate (default: `throughput` of its metrics).
      device: what it trained on (default: this machine, `train.runtime.detect_hardware`).
    Returns:
      {"samples_per_sec", "device", "model", "precision", "batch_size", "max_seq_length"}.
    """
    md = ModelDir(model_dir)
    config = md.load_model_config()
    options = json.loads(md.training_args.read_text(encoding="utf-8")) if md.training_args.exists() else {}
    if device is None:
        from albert_ner.train.runtime import detect_hardware

        device = detect_hardware().describe()
    return {
        "samples_per_sec": throughput(md.read_metrics()) if samples_per_sec is None else samples_per_sec,
        "device": device,
        "model": model_shape(config["encoder"], config.get("lstm_units")),
        # Older model dirs have no precision_used; their `precision` was always explicit.
        "precision": options.get("precision_used", options.get("precision")),
        "batch_size": options.get("batch_size"),
        "max_seq_length": config.get("max_seq_length", options.get("max_seq_length")),
    }


def summary_frame(runs: list[Run]):
    """One row per run: route, steps, last eval_f / entity F1, best entity F1, samples/s."""
    import pandas as pd

    rows = []
    for run in runs:
        records = run.records
        last = records[-1] if records else {}
        rows.append({
            "run": run.name,
            "route": run.route,
            "steps": last.get("step"),
            "eval_f": last.get("eval_f"),
            "entity_f1": last.get("entity_f1"),
            "best_entity_f1": run.final.get("best_entity_f1"),
            "samples_per_sec": throughput(records),
        })
    return pd.DataFrame(rows)


def per_type_frame(scores: dict):
    """The per-type precision / recall / F1 / support table of a scores dict, plus micro."""
    import pandas as pd

    frame = pd.DataFrame(scores.get("per_type", {})).T
    frame.loc["micro avg"] = {
        "precision": scores["entity_precision"], "recall": scores["entity_recall"],
        "f1": scores["entity_f1"], "support": frame["support"].sum() if len(frame) else 0,
    }
    frame["support"] = frame["support"].astype(int)
    return frame


def max_curve_difference(runs: list[Run], metric: str = "eval_f") -> float:
    """Largest |difference| of `metric` between runs at the same step (inf if steps differ)."""
    series = [{r["step"]: r[metric] for r in run.records} for run in runs]
    if len(series) < 2:
        return 0.0
    steps = set(series[0])
    if any(set(s) != steps for s in series[1:]):
        return float("inf")
    return max((abs(s[k] - series[0][k]) for s in series[1:] for k in steps), default=0.0)


@dataclasses.dataclass
class RecipeResult:
    """A full-MSRA benchmark run of one recipe (`benchmarks/results/recipes.json`)."""

    name: str
    minutes: float
    device: str
    records: list[dict]
    test_entity_f1: float | None


def load_recipe_results(registry: str | os.PathLike) -> list[RecipeResult]:
    """The recipe runs a `recipes.json` registry lists, with their dev curves and test F1.

    Args:
      registry: path of the JSON file; its "runs" name a metrics.jsonl and a test-score JSON
        (any file with "entity_f1" or "test_entity_f1") relative to the registry's folder.
    Raises:
      FileNotFoundError naming the registry entry whose files are missing.
    """
    registry = Path(registry)
    listing = json.loads(registry.read_text(encoding="utf-8"))
    results = []
    for entry in listing["runs"]:
        metrics = registry.parent / entry["metrics"]
        if not metrics.is_file():
            raise FileNotFoundError(f"{registry}: run {entry['name']!r} names {metrics}, which does not exist")
        records = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
        test_f1 = None
        if entry.get("test"):
            scores = json.loads((registry.parent / entry["test"]).read_text(encoding="utf-8"))
            test_f1 = scores.get("entity_f1", scores.get("test_entity_f1"))
        results.append(RecipeResult(entry["name"], float(entry["minutes"]), entry.get("device", ""), records, test_f1))
    return results
