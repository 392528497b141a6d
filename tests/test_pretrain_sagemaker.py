"""Pretraining as a SageMaker job: the `pretraining` channel / `task=pretrain` route through the
same contract and entrypoints, and a training job that starts from its model.tar.gz.
"""

from __future__ import annotations

import json
import shutil
import tarfile

import pytest

from albert_ner.sagemaker.contract import (
    ContractError,
    JobEnvironment,
    job_task,
    plan_job,
    plan_pretraining,
)
from albert_ner.sagemaker.local_runner import run_local_job
from albert_ner.sagemaker.source_dir import stage_source_dir

from test_sagemaker_contract import CONLL, make_tree

TEXT = "国务院总理李鹏今天在北京会见了日本外务大臣。\n中华人民共和国成立于一九四九年。\n"


def test_task_comes_from_the_hyperparameter_or_the_channels(tmp_path):
    def task(hps, channels, name):
        return job_task(JobEnvironment.load(make_tree(tmp_path / name, hps, channels)))

    assert task({}, {"pretraining": {"a.txt": TEXT}}, "a") == "pretrain"
    assert task({}, {"training": {"train.txt": CONLL}}, "b") == "train"
    assert task({"task": "pretrain"}, {"training": {"train.txt": CONLL}}, "c") == "pretrain"
    with pytest.raises(ContractError, match="both given: set hyperparameter task"):
        task({}, {"pretraining": {"a.txt": TEXT}, "training": {"train.txt": CONLL}}, "d")
    with pytest.raises(ContractError, match="hyperparameter task: expected one of train, pretrain"):
        task({"task": "finetune"}, {"training": {"train.txt": CONLL}}, "e")


def test_pretraining_plan_maps_channels_and_hyperparameters(tmp_path):
    env = make_tree(tmp_path / "job", {"model_config": "micro", "max_steps": "8", "whole_word_mask": "true",
                                       "learning_rate": "5e-4"},
                    {"pretraining": {"a.txt": TEXT, "b.txt": TEXT}})
    plan = plan_pretraining(JobEnvironment.load(env))
    args = plan.args
    assert args.text_files == [str(tmp_path / "job" / "input" / "data" / "pretraining")]
    assert args.output_dir == str(tmp_path / "job" / "model")
    assert args.checkpoint_dir == str(tmp_path / "job" / "checkpoints") and args.resume is False
    assert (args.max_steps, args.whole_word_mask, args.learning_rate) == (8, True, 5e-4)

    # Without a pretraining channel: the text side of the training file only (not dev/test).
    env = make_tree(tmp_path / "job2", {"task": "pretrain"},
                    {"training": {"train.txt": CONLL, "dev.txt": CONLL, "test.txt": CONLL}})
    plan = plan_pretraining(JobEnvironment.load(env))
    assert plan.args.text_files == [str(tmp_path / "job2" / "input" / "data" / "training" / "train.txt")]

    for hps, message in (({"tag_scheme": "bio"}, "unknown hyperparameter 'tag_scheme'.*albert-ner pretrain"),
                         ({"max_steps": "many"}, "max_steps: expected an integer")):
        env = make_tree(tmp_path / f"bad{len(message)}", hps, {"pretraining": {"a.txt": TEXT}})
        with pytest.raises(ContractError, match=message):
            plan_pretraining(JobEnvironment.load(env))
    env = make_tree(tmp_path / "two", {}, {"pretraining": {"a.txt": TEXT}}, hosts=("algo-1", "algo-2"))
    with pytest.raises(ContractError, match="set instance_count to 1"):
        plan_pretraining(JobEnvironment.load(env))


@pytest.mark.slow
def test_pretraining_job_writes_a_model_a_training_job_takes(real_sample, tmp_path, monkeypatch):
    from albert_ner.checkpoints import resolve_pretrained
    from albert_ner.data.readers import read_corpus

    texts = tmp_path / "unlabelled"
    texts.mkdir()
    lines = [e.text for e in read_corpus(real_sample["train"]).examples[:300]]
    (texts / "domain.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    hyperparameters = {"model_config": "micro", "max_steps": "8", "eval_every": "4", "log_every": "4",
                       "batch_size": "16", "max_seq_length": "40", "task": "pretrain"}

    # BYOS: the framework image runs the entry script with --key value arguments.
    source = stage_source_dir(tmp_path / "source")
    job = run_local_job(tmp_path / "pretrain_job", hyperparameters, {"pretraining": texts},
                        mode="byos", source_dir=source, timeout=300)
    assert job.ok, (tmp_path / "pretrain_job" / "algo-1.log").read_text()[-3000:]
    pretrained = tmp_path / "pretrained"
    with tarfile.open(job.model_tar) as tar:
        tar.extractall(pretrained, filter="data")
    with tarfile.open(job.output_tar) as tar:
        assert {"metrics.jsonl", "final_metrics.json", "train.log"} <= set(tar.getnames())
    assert resolve_pretrained(pretrained).layout == "albert-ner"
    assert [r["step"] for r in map(json.loads, (pretrained / "metrics.jsonl").read_text().splitlines())] == [4, 8]

    # A training job takes that model.tar.gz as its init_checkpoint, delivered as a channel
    # (the S3 object as is: the channel directory holds the archive). The plan only:
    # tests/test_pretrain.py fine-tunes from such a directory.
    env = make_tree(tmp_path / "train_job", {"init_checkpoint": "/opt/ml/input/data/pretrained"},
                    {"training": {}, "pretrained": {}})
    data = tmp_path / "train_job" / "input" / "data"
    shutil.copyfile(real_sample["train"], data / "training" / "train.txt")
    shutil.copyfile(job.model_tar, data / "pretrained" / "model.tar.gz")
    train = JobEnvironment.load(env)
    assert job_task(train) == "train"
    init = plan_job(train).args.init_checkpoint
    assert init == str(data / "pretrained")
    monkeypatch.setenv("ALBERT_NER_CACHE", str(tmp_path / "cache"))
    resolved = resolve_pretrained(init)
    assert resolved.layout == "albert-ner" and str(tmp_path / "cache" / "unpacked") in resolved.source
