"""SIGTERM (a spot interruption, StopTrainingJob, `docker stop`) during `train` and `pretrain`.

The fault is injected for real: the CLI runs in a child process and gets SIGTERM once its
metrics.jsonl shows some evaluations. Expected: the step in flight is finished, a checkpoint
of exactly that step is written, one line says so, the exit status is 143, and a rerun with
--resume ends bit-identical to a run never interrupted (CPU, deterministic ops, same batching).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from albert_ner.cli import main
from albert_ner.data.readers import read_corpus
from albert_ner.train.interrupt import INTERRUPTED_EXIT_STATUS, StopSignals, TrainingInterrupted

TIMING_KEYS = {"samples_per_sec", "wall_time", "eval_seconds"}
LINE = re.compile(
    r"^interrupted by SIGTERM at step (\d+): checkpoint written to (\S+); rerun with --resume "
    r"\(SageMaker: the same checkpoint_s3_uri\) to continue$", re.M,
)


def metrics_without_timing(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in lines]


def assert_same_arrays(first: Path, second: Path) -> None:
    """Equal values; variable names may differ (Keras numbers a process's second model)."""
    with np.load(first) as a, np.load(second) as b:
        assert a.files == b.files
        for name in a.files:
            if name == "__names__":
                continue
            np.testing.assert_array_equal(a[name], b[name], err_msg=f"{first.name}:{name}")


def sigterm_once_metrics_show(argv: list[str], metrics: Path, lines: int, log: Path) -> tuple[int, str]:
    """Runs the CLI in a child, SIGTERMs it once `metrics` has `lines` lines; (status, output)."""
    with open(log, "w", encoding="utf-8") as out:
        child = subprocess.Popen([sys.executable, "-m", "albert_ner.cli", *argv],
                                 env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 240
            while time.time() < deadline and child.poll() is None:
                if metrics.exists() and len(metrics.read_text(encoding="utf-8").splitlines()) >= lines:
                    break
                time.sleep(0.05)
            assert child.poll() is None, "the child finished before the signal; give it more steps"
            sent = time.time()
            child.send_signal(signal.SIGTERM)
            status = child.wait(timeout=60)
            assert time.time() - sent < 20, "the checkpoint took more than a few seconds"
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    return status, log.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- the mechanism
def test_stop_signals_only_records_and_restores_the_previous_handler():
    previous = signal.getsignal(signal.SIGTERM)
    with StopSignals() as stop:
        assert stop.received is None
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next bytecode or so
        for _ in range(100):
            if stop.received:
                break
            time.sleep(0.01)
        assert stop.received == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is previous


def test_stop_signals_outside_the_main_thread_is_inert():
    seen = {}

    def run():
        with StopSignals() as stop:
            seen["received"] = stop.received
            seen["installed"] = bool(stop._previous)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == {"received": None, "installed": False}


def test_interrupt_saves_once_logs_one_line_and_raises(tmp_path):
    saves, lines = [], []
    stop = StopSignals()
    stop._received = signal.SIGTERM
    with pytest.raises(TrainingInterrupted) as caught:
        stop.interrupt(7, tmp_path, lambda: saves.append(7), saved_step=5, log=lines.append)
    assert saves == [7] and len(lines) == 1 and LINE.match(lines[0])
    assert (caught.value.step, caught.value.checkpoint_step) == (7, 7)
    # Just written at this step: not again.
    with pytest.raises(TrainingInterrupted):
        stop.interrupt(10, tmp_path, lambda: saves.append(10), saved_step=10, log=lines.append)
    assert saves == [7]
    # No checkpoint written off schedule (multi-worker): the line names the one kept.
    with pytest.raises(TrainingInterrupted) as caught:
        stop.interrupt(12, tmp_path, None, saved_step=10, log=lines.append)
    assert "the checkpoint of step 10" in str(caught.value) and "--resume" in str(caught.value)


# --------------------------------------------------------------------------- train
def train_argv(data: dict, out: Path, *extra: str) -> list[str]:
    return ["train", "--train-file", str(data["train"]), "--dev-file", str(data["dev"]),
            "--output-dir", str(out), "--model-config", "micro", "--batch-size", "16",
            "--max-seq-length", "40", "--log-every", "10", "--max-steps", "40", "--eval-every", "10",
            "--no-export", "--seed", "5", *extra]


@pytest.mark.slow
def test_sigterm_during_training_checkpoints_the_step_and_resumes_bit_identically(synthetic_data, tmp_path):
    full = tmp_path / "full"
    assert main(train_argv(synthetic_data, full)) == 0

    run = tmp_path / "interrupted"
    status, output = sigterm_once_metrics_show(train_argv(synthetic_data, run), run / "metrics.jsonl", 2,
                                               tmp_path / "child.log")
    assert status == INTERRUPTED_EXIT_STATUS == 143, output[-3000:]
    found = LINE.findall(output)
    assert len(found) == 1, output[-3000:]
    step = int(found[0][0])
    assert Path(found[0][1]) == run / "checkpoints"
    assert 20 <= step < 40
    state = json.loads((run / "checkpoints" / "latest" / "state.json").read_text())
    assert state["step"] == step  # the step in flight, not the last scheduled checkpoint
    assert "Traceback" not in output and not (run / "final_metrics.json").exists()

    assert main(train_argv(synthetic_data, run, "--resume")) == 0
    assert metrics_without_timing(run / "metrics.jsonl") == metrics_without_timing(full / "metrics.jsonl")
    assert_same_arrays(run / "weights.npz", full / "weights.npz")
    for name in ("model.npz", "optimizer_main.npz", "optimizer_crf.npz"):
        assert_same_arrays(run / "checkpoints" / "latest" / name, full / "checkpoints" / "latest" / name)


# --------------------------------------------------------------------------- pretrain
@pytest.fixture(scope="module")
def text_file(synthetic_data, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "domain.txt"
    texts = [e.text for e in read_corpus(synthetic_data["train"]).examples[:300]]
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


def pretrain_argv(text: Path, out: Path, *extra: str) -> list[str]:
    return ["pretrain", "--text-file", str(text), "--output-dir", str(out), "--model-config", "micro",
            "--batch-size", "16", "--max-seq-length", "40", "--log-every", "5", "--max-steps", "40",
            "--eval-every", "10", "--seed", "5", *extra]


@pytest.mark.slow
def test_sigterm_during_pretraining_checkpoints_and_resume_continues_from_that_step(text_file, tmp_path, capsys):
    run = tmp_path / "interrupted"
    status, output = sigterm_once_metrics_show(pretrain_argv(text_file, run), run / "metrics.jsonl", 2,
                                               tmp_path / "child.log")
    assert status == INTERRUPTED_EXIT_STATUS, output[-3000:]
    found = LINE.findall(output)
    assert len(found) == 1, output[-3000:]
    step = int(found[0][0])
    assert json.loads((run / "checkpoints" / "latest" / "state.json").read_text())["step"] == step
    assert not (run / "encoder_weights.npz").exists()

    capsys.readouterr()
    assert main(pretrain_argv(text_file, run, "--resume")) == 0
    assert f"resume: continuing from step {step} " in capsys.readouterr().out
    full = tmp_path / "full"
    assert main(pretrain_argv(text_file, full)) == 0
    assert metrics_without_timing(run / "metrics.jsonl") == metrics_without_timing(full / "metrics.jsonl")
    assert_same_arrays(run / "encoder_weights.npz", full / "encoder_weights.npz")


# --------------------------------------------------------------------------- SageMaker
def test_sagemaker_job_reports_an_interruption_with_143_and_the_line(tmp_path, monkeypatch, capsys):
    from albert_ner.sagemaker import job as job_module

    def interrupted(job, env):
        raise TrainingInterrupted("SIGTERM", 12, 12, tmp_path / "checkpoints")

    monkeypatch.setattr(job_module.JobEnvironment, "load", staticmethod(lambda *args, **kwargs: None))
    monkeypatch.setattr(job_module, "train_job", interrupted)
    env = {"SAGEMAKER_BASE_DIR": str(tmp_path / "ml")}
    assert job_module.run_job(env) == 143
    paths = job_module.JobPaths.from_environ(env)
    reason = paths.failure.read_text(encoding="utf-8").strip()
    assert reason.startswith("interrupted by SIGTERM at step 12: checkpoint written to ")
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "error:" not in captured.err
