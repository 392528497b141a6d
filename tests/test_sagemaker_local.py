"""SageMaker jobs run as local processes (no Docker): BYOC and BYOS train the same model,
a killed (spot-interrupted) job resumes to the same metrics, two hosts train as one.
"""

from __future__ import annotations

import json
import shutil
import signal
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from albert_ner.sagemaker.local_runner import LocalJob, run_local_job
from albert_ner.sagemaker.source_dir import stage_source_dir

TIMING_KEYS = {"samples_per_sec", "wall_time", "eval_seconds"}

# Strings, as the platform stores them. Small enough for seconds on a CPU; checkpoints every
# 10 steps so the kill test has something to resume from.
HYPERPARAMETERS = {
    "model_config": "micro",
    "max_steps": "60",
    "eval_every": "10",
    "checkpoint_every": "10",
    "log_every": "10",
    "batch_size": "16",
    "max_seq_length": "40",
    "seed": "11",
    "do_predict": "true",  # the article's flag: scores test.txt into output/data
}


def metrics(model_dir: Path) -> list[dict]:
    lines = (Path(model_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in lines]


def extract(tar_path: Path, target: Path) -> Path:
    with tarfile.open(tar_path) as tar:
        tar.extractall(target, filter="data")
    return target


def checkpoint_step(directory: Path) -> int:
    """The step of the newest complete checkpoint (latest/, or old/ during the swap), else 0."""
    for name in ("latest", "old"):
        try:
            return json.loads((directory / name / "state.json").read_text())["step"]
        except (FileNotFoundError, json.JSONDecodeError):
            continue
    return 0


@pytest.fixture(scope="module")
def channels(synthetic_data, tmp_path_factory) -> dict:
    """The article's layout (train/dev/test in `training`) plus a separate `validation`."""
    validation = tmp_path_factory.mktemp("validation")
    shutil.copyfile(synthetic_data["dev"], validation / "dev.txt")
    return {"training": synthetic_data["train"].parent, "validation": validation}


@pytest.fixture(scope="module")
def byoc_job(channels, tmp_path_factory):
    """The reference run: the BYOC `train` entrypoint, data in one `training` channel."""
    job_dir = tmp_path_factory.mktemp("byoc")
    result = run_local_job(job_dir, HYPERPARAMETERS, {"training": channels["training"]}, timeout=300)
    assert result.ok, (job_dir / "algo-1.log").read_text()[-3000:]
    return result


@pytest.mark.slow
def test_byoc_and_byos_train_the_same_loadable_model(byoc_job, channels, tmp_path):
    from albert_ner.predict import Predictor

    source = stage_source_dir(tmp_path / "source")
    byos = run_local_job(tmp_path / "byos", HYPERPARAMETERS, channels, mode="byos",
                         source_dir=source, timeout=300)
    assert byos.ok, (tmp_path / "byos" / "algo-1.log").read_text()[-3000:]

    models = {}
    for name, result in (("byoc", byoc_job), ("byos", byos)):
        assert result.model_tar.exists() and result.output_tar.exists()
        model_dir = extract(result.model_tar, tmp_path / f"{name}_model")
        predictor = Predictor.from_model_dir(model_dir)
        [tagged] = predictor.predict(["张伟在北京大学工作。"])
        assert tagged.text == "张伟在北京大学工作。"
        outputs = extract(result.output_tar, tmp_path / f"{name}_output")
        assert (outputs / "metrics.jsonl").exists() and (outputs / "train.log").exists()
        assert "entity_f1" in json.loads((outputs / "test_metrics.json").read_text())
        models[name] = model_dir
    steps = [r["step"] for r in metrics(models["byoc"])]
    assert steps == [10, 20, 30, 40, 50, 60]
    assert metrics(models["byoc"]) == metrics(models["byos"])


@pytest.mark.slow
def test_killed_job_resumes_from_its_checkpoints_to_the_same_metrics(byoc_job, channels, tmp_path):
    checkpoints = tmp_path / "s3_checkpoints"  # survives the interruption, as S3 does
    job = LocalJob(tmp_path / "attempt1", HYPERPARAMETERS, {"training": channels["training"]},
                   checkpoint_dir=checkpoints).start()
    deadline = time.time() + 180
    while time.time() < deadline and job.poll()["algo-1"] is None:
        if checkpoint_step(checkpoints) >= 20:
            break
        time.sleep(0.05)
    assert job.poll()["algo-1"] is None, "the job finished before it could be killed"
    job.kill(signal.SIGKILL)
    step = checkpoint_step(checkpoints)
    assert 0 < step < 60

    # The restarted job gets a fresh machine (empty /opt/ml/model) and the same checkpoints.
    again = run_local_job(tmp_path / "attempt2", HYPERPARAMETERS, {"training": channels["training"]},
                          checkpoint_dir=checkpoints, timeout=300)
    assert again.ok, (tmp_path / "attempt2" / "algo-1.log").read_text()[-3000:]
    assert f"resume: continuing from step {step}" in (tmp_path / "attempt2" / "algo-1.log").read_text()
    resumed = extract(again.model_tar, tmp_path / "resumed")
    reference = extract(byoc_job.model_tar, tmp_path / "reference")
    assert metrics(resumed) == metrics(reference)
    assert json.loads((resumed / "final_metrics.json").read_text())["best_step"] == \
        json.loads((reference / "final_metrics.json").read_text())["best_step"]


@pytest.mark.slow
def test_two_hosts_train_one_model_with_multi_worker_mirrored_strategy(channels, tmp_path):
    hyperparameters = dict(HYPERPARAMETERS, max_steps="20", eval_every="20", checkpoint_every="20")
    result = run_local_job(tmp_path / "job", hyperparameters, {"training": channels["training"]},
                           instance_count=2, checkpoint_dir=tmp_path / "checkpoints", timeout=300)
    logs = {h: (tmp_path / "job" / f"{h}.log").read_text() for h in ("algo-1", "algo-2")}
    assert result.ok, logs
    for host, index in (("algo-1", 0), ("algo-2", 1)):
        assert f"is worker {index} of" in logs[host] and "2 replica(s)" in logs[host]

    # Each host's final checkpoint holds its final weights: identical across workers.
    first = np.load(tmp_path / "checkpoints" / "algo-1" / "latest" / "model.npz")
    second = np.load(tmp_path / "checkpoints" / "algo-2" / "latest" / "model.npz")
    assert first.files == second.files and len(first.files) > 10
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)

    # Only the chief wrote a model (and it is what model.tar.gz holds).
    assert (tmp_path / "job" / "algo-1" / "model" / "1" / "saved_model.pb").exists()
    assert not any((tmp_path / "job" / "algo-2" / "model").iterdir())
    with tarfile.open(result.model_tar) as tar:
        assert "1/saved_model.pb" in tar.getnames()
