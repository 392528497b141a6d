"""Running one SageMaker training job on this host: the contract (contract.py) → the loop.

`run_job()` is what the BYOC `train` entrypoint and the BYOS entry script call. It plans the
run from the /opt/ml tree, sets TF_CONFIG on multi-node jobs, trains (resuming from
/opt/ml/checkpoints when a spot restart left a checkpoint there), copies metrics and the log to
/opt/ml/output/data, and on ANY failure writes a one-line reason to /opt/ml/output/failure and
returns non-zero. SIGTERM (a spot interruption, StopTrainingJob) makes the loop write a
checkpoint of its current step and stop (`train.interrupt`): that line goes to output/failure
too, and the status is 143, as for a process the signal ended.

A pretraining job (hyperparameter `task=pretrain`, or a `pretraining` channel) takes the same
route to `pretrain_job()`: masked-LM pretraining, the encoder directory in /opt/ml/model.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import traceback
from pathlib import Path

from albert_ner.sagemaker.contract import (
    ContractError,
    JobEnvironment,
    JobPaths,
    job_task,
    plan_job,
    plan_pretraining,
    tf_config_for,
)

# Copies of the model directory's running state kept next to the checkpoint, so a spot
# restart (a fresh /opt/ml/model, the old /opt/ml/checkpoints) ends with the full history.
MODEL_STATE_DIR = "model_state"
MODEL_STATE_FILES = ("metrics.jsonl", "weights.npz")


class _Tee:
    """Copies what the job prints into output/data/train.log (it comes back in output.tar.gz)."""

    def __init__(self, stream, path: Path):
        self.stream, self.file = stream, open(path, "a", encoding="utf-8")

    def write(self, text):
        self.stream.write(text)
        self.file.write(text)
        return len(text)

    def flush(self):
        self.stream.flush()
        self.file.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


def _copy_atomic(source: Path, target: Path) -> None:
    """Copies durably; a full disk is a `DiskFullError` and leaves the previous copy."""
    from albert_ner.durable_io import replacing

    with replacing(target, source.stat().st_size) as tmp:
        shutil.copyfile(source, tmp)


def _make_trainer(args, strategy=None):
    """A Trainer that also keeps the model directory's running state beside its checkpoint."""
    from albert_ner.train.loop import Trainer

    class JobTrainer(Trainer):
        def save_checkpoint(self, state: dict) -> None:
            # Copied *before* the checkpoint: a later metrics line is cut on resume, and a later
            # best weights file is re-made identically by the deterministic replay.
            if self.is_chief:
                keep = self.checkpoint_dir / MODEL_STATE_DIR
                keep.mkdir(parents=True, exist_ok=True)
                for name in MODEL_STATE_FILES:
                    if (self.model_dir.path / name).exists():
                        _copy_atomic(self.model_dir.path / name, keep / name)
            super().save_checkpoint(state)

    return JobTrainer(args, strategy=strategy)


def _restore_model_state(args) -> None:
    """Before a resume into an empty model dir (a spot restart), brings back its history."""
    keep = Path(args.checkpoint_dir) / MODEL_STATE_DIR
    model_dir = Path(args.output_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    for name in MODEL_STATE_FILES:
        if (keep / name).exists() and not (model_dir / name).exists():
            shutil.copyfile(keep / name, model_dir / name)


def _log(message: str) -> None:
    print(f"sagemaker: {message}", flush=True)


def _make_pretrainer(args):
    """A Pretrainer that keeps its metrics beside its checkpoint (as `_make_trainer` does)."""
    from albert_ner.pretrain.loop import Pretrainer

    class JobPretrainer(Pretrainer):
        def save_checkpoint(self, state: dict) -> None:
            keep = self.checkpoint_dir / MODEL_STATE_DIR
            keep.mkdir(parents=True, exist_ok=True)
            if self.metrics_path.exists():
                _copy_atomic(self.metrics_path, keep / self.metrics_path.name)
            super().save_checkpoint(state)

    return JobPretrainer(args)


def pretrain_job(job: JobEnvironment) -> dict:
    """Plans and runs a pretraining job (one host); returns the final metrics."""
    plan = plan_pretraining(job)
    for note in plan.notes:
        _log(note)
    args = plan.args
    _log(
        f"pretraining on {', '.join(args.text_files)}; encoder dir {args.output_dir}; "
        f"checkpoints {args.checkpoint_dir}{' (resuming)' if args.resume else ''}; {job.num_gpus} GPU(s)"
    )
    if args.resume:
        _restore_model_state(args)
    final = _make_pretrainer(args).run()
    for name in ("metrics.jsonl", "final_metrics.json", "pretraining_args.json"):
        if (Path(args.output_dir) / name).exists():
            shutil.copyfile(Path(args.output_dir) / name, job.paths.output_data / name)
    return final


def train_job(job: JobEnvironment, environ=None) -> dict:
    """Plans and runs the training of one host; returns the final metrics (chief) or {}."""
    env = os.environ if environ is None else environ
    if job_task(job) == "pretrain":
        return pretrain_job(job)
    plan = plan_job(job)
    for note in plan.notes:
        _log(note)
    tf_config = tf_config_for(job, env)
    if tf_config is not None:
        # Set before TensorFlow builds its strategy: default_strategy() reads it.
        os.environ["TF_CONFIG"] = json.dumps(tf_config)
        _log(f"host {job.current_host} is worker {tf_config['task']['index']} of {tf_config['cluster']['worker']}")
    args = plan.args
    _log(
        f"training {args.train_file}; dev {args.dev_file or '(none)'}; model dir {args.output_dir}; "
        f"checkpoints {args.checkpoint_dir}{' (resuming)' if args.resume else ''}; {job.num_gpus} GPU(s)"
    )
    if args.resume:
        _restore_model_state(args)
    final = _make_trainer(args).run()

    if job.is_chief:
        out = job.paths.output_data
        for name in ("metrics.jsonl", "final_metrics.json", "training_args.json"):
            if (Path(args.output_dir) / name).exists():
                shutil.copyfile(Path(args.output_dir) / name, out / name)
        if plan.test_file is not None and args.export:
            from albert_ner.data.readers import read_corpus
            from albert_ner.predict import Predictor, evaluate

            corpus = read_corpus(plan.test_file, format=args.data_format, scheme=args.source_scheme)
            scores = evaluate(Predictor.from_model_dir(args.output_dir), corpus.examples)
            (out / "test_metrics.json").write_text(json.dumps(scores, ensure_ascii=False, indent=2))
            _log(f"test entity_f1 = {scores.get('entity_f1', float('nan')):.6g}")
    return final if job.is_chief else {}


def _own_errors() -> tuple:
    """Errors whose message is written for the user: no type prefix, no traceback."""
    from albert_ner.data.errors import DataError
    from albert_ner.durable_io import DiskFullError
    from albert_ner.train.checkpoint import NoUsableCheckpoint
    from albert_ner.train.interrupt import TrainingInterrupted

    return (ContractError, DataError, DiskFullError, NoUsableCheckpoint, TrainingInterrupted)


def failure_reason(err: BaseException) -> str:
    """One line for output/failure: our own errors as they are, others with their type."""
    text = " ".join(str(err).split())
    if not isinstance(err, _own_errors()) or not text:
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text[:1000]  # SageMaker shows the first 1024 characters


def run_job(environ=None, cli_hyperparameters: dict | None = None) -> int:
    """The whole job on this host: 0 on success; on any failure writes output/failure, 1.

    Stopped by SIGTERM in the loop: the checkpoint is written, the loop's line goes to
    output/failure (as a stop's reason, shown only if the platform calls it a failure), 143.
    """
    env = os.environ if environ is None else environ
    env_paths = JobPaths.from_environ(env)
    stdout = sys.stdout
    try:
        for directory in (env_paths.model, env_paths.output_data):
            directory.mkdir(parents=True, exist_ok=True)
        sys.stdout = _Tee(stdout, env_paths.output_data / "train.log")
        job = JobEnvironment.load(env, cli_hyperparameters)
        train_job(job, env)
        return 0
    except BaseException as err:  # noqa: BLE001 - the platform must learn about every failure
        from albert_ner.train.interrupt import INTERRUPTED_EXIT_STATUS, TrainingInterrupted

        reason = failure_reason(err)
        if not isinstance(err, (*_own_errors(), KeyboardInterrupt)):
            traceback.print_exc()  # unexpected: the full story goes to the job log
        try:
            env_paths.output.mkdir(parents=True, exist_ok=True)
            env_paths.failure.write_text(reason + "\n", encoding="utf-8")
        except OSError as write_err:
            print(f"error: could not write {env_paths.failure}: {write_err}", file=sys.stderr)
        if isinstance(err, TrainingInterrupted):  # not an error; the loop has logged the line
            return INTERRUPTED_EXIT_STATUS
        print(f"error: {reason}", file=sys.stderr, flush=True)
        return 130 if isinstance(err, KeyboardInterrupt) else 1
    finally:
        if isinstance(sys.stdout, _Tee):
            sys.stdout.flush()
            sys.stdout.file.close()
        sys.stdout = stdout


def main(argv: list[str] | None = None) -> int:
    """The BYOC `train` entrypoint: everything comes from the /opt/ml tree; `train` is ignored."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return run_job()


if __name__ == "__main__":
    sys.exit(main())
