"""One set of training options for every route (02 notebook, 03 BYOC, 04 BYOS).

The three routes must train the very same model on the very same files, so that their
dev curves can be compared (and, for the same seed, are identical). The notebooks build the
options once from their parameters with `train_options` and hand them to each route:
`TrainArgs` directly (02), or as SageMaker hyperparameters (03, 04).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path


def train_options(
    model_config: str = "tiny",
    max_steps: int | None = None,
    epochs: float = 3.0,
    eval_every: int = 500,
    batch_size: int = 32,
    max_seq_length: int = 128,
    learning_rate: float | None = None,
    seed: int = 42,
    init_checkpoint: str | None = None,
    log_every: int | None = None,
) -> dict:
    """`TrainArgs` fields (without files and output dir) from notebook parameters.

    With an `init_checkpoint` the model config defaults to the checkpoint's own.
    """
    options = {
        "model_config": None if init_checkpoint else model_config,
        "init_checkpoint": init_checkpoint,
        "epochs": float(epochs),
        "eval_every": int(eval_every),
        "log_every": int(log_every or max(1, min(50, eval_every))),
        "batch_size": int(batch_size),
        "max_seq_length": int(max_seq_length),
        "seed": int(seed),
    }
    if max_steps:
        options["max_steps"] = int(max_steps)
    if learning_rate:
        options["learning_rate"] = float(learning_rate)
    return {k: v for k, v in options.items() if v is not None}


def channel_file(channel_dir: str | os.PathLike) -> Path:
    """The corpus file inside a channel directory (the one file, or train.txt / dev.txt)."""
    files = sorted(p for p in Path(channel_dir).iterdir() if p.is_file() and not p.name.startswith("."))
    if len(files) != 1:
        raise ValueError(f"{channel_dir}: expected one corpus file, found {[p.name for p in files]}")
    return files[0]


def notebook_train_args(channels: dict, output_dir: str | os.PathLike, options: dict):
    """`TrainArgs` reading the staged channels, exactly what a SageMaker job would see."""
    from albert_ner.train.loop import TrainArgs

    return TrainArgs(
        train_file=str(channel_file(channels["training"])),
        dev_file=str(channel_file(channels["validation"])),
        output_dir=str(output_dir),
        **options,
    )


def args_frame(args):
    """A TrainArgs as a two-column table (non-default values first)."""
    import pandas as pd

    from albert_ner.train.loop import TrainArgs

    values = dataclasses.asdict(args)
    defaults = {f.name: f.default for f in dataclasses.fields(TrainArgs)}
    rows = sorted(values.items(), key=lambda kv: (kv[1] == defaults.get(kv[0]), kv[0]))
    return pd.DataFrame([{"option": k, "value": str(v), "default": v == defaults.get(k)} for k, v in rows])


PRETRAINED_CHANNEL = "pretrained"


def job_inputs(channels: dict, options: dict) -> tuple[dict, dict]:
    """(hyperparameters, channels) of a SageMaker job equivalent to `notebook_train_args`.

    Hyperparameter names are the TrainArgs fields (the contract's convention). A local
    pretrained checkpoint travels as its own `pretrained` channel, and the job reads it at
    /opt/ml/input/data/pretrained.
    """
    hyperparameters = dict(options)
    inputs = {"training": channels["training"], "validation": channels["validation"]}
    checkpoint = hyperparameters.get("init_checkpoint")
    if checkpoint and Path(checkpoint).exists():
        inputs[PRETRAINED_CHANNEL] = str(Path(checkpoint).resolve())
        hyperparameters["init_checkpoint"] = f"/opt/ml/input/data/{PRETRAINED_CHANNEL}"
    return hyperparameters, inputs
