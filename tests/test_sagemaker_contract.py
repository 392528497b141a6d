"""The SageMaker container contract: string hyperparameters, channels, hosts, failure lines.

Fast tests call the contract on a temporary /opt/ml tree (SAGEMAKER_BASE_DIR); the failure
tests run the real BYOC entrypoint through the local runner and read output/failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from albert_ner.sagemaker.contract import (
    ContractError,
    JobEnvironment,
    coerce,
    parse_hyperparameters,
    plan_job,
    tf_config_for,
)
from albert_ner.sagemaker.entry_point import parse_script_args
from albert_ner.sagemaker.local_runner import REPO_TRAIN_ENTRYPOINT, run_local_job

REPO = Path(__file__).resolve().parents[1]

# The article's hyperparameters, exactly as its notebook passed them (SageMaker stringifies).
ARTICLE_HYPERPARAMETERS = {
    "task_name": "ner",
    "do_train": "true",
    "do_eval": "true",
    "data_dir": "/opt/ml/input/data/training",
    "output_dir": "/opt/ml/model",
    "vocab_file": "./albert_config/vocab.txt",
    "bert_config_file": "./albert_base_zh/albert_config_base.json",
    "max_seq_length": "128",
    "train_batch_size": "64",
    "learning_rate": "2e-5",
    "num_train_epochs": "3",
}


def make_tree(root: Path, hyperparameters: dict, channels: dict, hosts=("algo-1",), current="algo-1") -> dict:
    """A minimal /opt/ml tree; returns the environment that points the contract at it."""
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (config / "inputdataconfig.json").write_text(json.dumps({name: {} for name in channels}))
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": current, "hosts": list(hosts)}))
    for name, files in channels.items():
        directory = root / "input" / "data" / name
        directory.mkdir(parents=True)
        for file_name, text in files.items():
            (directory / file_name).write_text(text, encoding="utf-8")
    return {"SAGEMAKER_BASE_DIR": str(root)}


CONLL = "中\tB-LOC\n国\tI-LOC\n人\tO\n\n"


@pytest.mark.parametrize("value,type_name,expected", [
    ("60", "int | None", 60), ("60.0", "int", 60), ("2e-5", "float | None", 2e-5), ("3", "float", 3.0),
    ("true", "bool", True), ("False", "bool", False), ("micro", "str | None", "micro"),
    ('"micro"', "str | None", "micro"), ("null", "int | None", None), ("123", "str | None", "123"),
])
def test_string_hyperparameters_become_typed_values(value, type_name, expected):
    assert coerce("key", value, type_name) == expected


@pytest.mark.parametrize("raw,named", [
    ({"max_steps": "ten"}, "max_steps"),
    ({"max_steps": "1.5"}, "max_steps"),
    ({"resume": "maybe"}, "resume"),
    ({"learning_rate": "fast"}, "learning_rate"),
    ({"max_stepz": "5"}, "max_stepz"),
    ({"max-steps": "5"}, "max_steps"),  # the hint says how to write it
    ({"task_name": "classify"}, "task_name"),
])
def test_bad_hyperparameters_are_one_line_naming_the_key(raw, named):
    with pytest.raises(ContractError) as info:
        parse_hyperparameters(raw)
    message = str(info.value)
    assert named in message and "\n" not in message


def test_article_hyperparameters_work_unchanged(tmp_path, monkeypatch):
    env = make_tree(tmp_path / "ml", ARTICLE_HYPERPARAMETERS,
                    {"training": {"train.txt": CONLL, "dev.txt": CONLL, "test.txt": CONLL}})
    # The article keeps vocab and config files in its code directory (the image's /opt/ml/code).
    code = tmp_path / "ml" / "code"
    (code / "albert_config").mkdir(parents=True)
    (code / "albert_config" / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n中\n")
    (code / "albert_base_zh").mkdir()
    (code / "albert_base_zh" / "albert_config_base.json").write_text("{}")
    monkeypatch.chdir(tmp_path)

    plan = plan_job(JobEnvironment.load(env))
    args, ml = plan.args, tmp_path / "ml"
    assert Path(args.train_file) == ml / "input/data/training/train.txt"
    assert Path(args.dev_file) == ml / "input/data/training/dev.txt"
    assert Path(args.output_dir) == ml / "model"
    assert Path(args.vocab_file) == code / "albert_config/vocab.txt"
    assert Path(args.model_config) == code / "albert_base_zh/albert_config_base.json"
    assert (args.batch_size, args.epochs, args.learning_rate, args.max_seq_length) == (64, 3.0, 2e-5, 128)
    assert Path(args.checkpoint_dir) == ml / "checkpoints" and args.resume is False


def test_channels_checkpoints_and_script_mode_overrides(tmp_path):
    env = make_tree(tmp_path / "ml", {"max_steps": "50", "model_config": "micro",
                                      "init_checkpoint": "albert_base_zh/albert_model.ckpt"},
                    {"training": {"corpus.bio": CONLL}, "validation": {"anything.txt": CONLL},
                     "pretrained": {"albert_model.ckpt.index": ""}})
    # A checkpoint from an interrupted (spot) attempt → resume automatically.
    latest = tmp_path / "ml" / "checkpoints" / "latest"
    latest.mkdir(parents=True)
    (latest / "state.json").write_text("{}")
    job = JobEnvironment.load(env, cli_hyperparameters={"max_steps": "70", "model_dir": "s3://b/m"})
    args = plan_job(job).args
    assert Path(args.train_file).name == "corpus.bio"  # a channel's single file is the data
    assert Path(args.dev_file).name == "anything.txt"
    assert args.max_steps == 70 and args.model_config == "micro" and args.resume is True
    # A TF1 checkpoint prefix named relative to the article's code dir, found in a channel.
    assert Path(args.init_checkpoint) == tmp_path / "ml/input/data/pretrained/albert_model.ckpt"


def test_lexicon_hyperparameter_is_a_built_in_name_or_a_file_in_a_channel(tmp_path):
    env = make_tree(tmp_path / "a", {"lexicon": "jieba", "unk_dropout": "0.3", "augment_mentions": "2"},
                    {"training": {"train.txt": CONLL}})
    args = plan_job(JobEnvironment.load(env)).args
    assert (args.lexicon, args.unk_dropout, args.augment_mentions) == ("jieba", 0.3, 2)
    env = make_tree(tmp_path / "b", {"lexicon": "jieba,terms.tsv"},
                    {"training": {"train.txt": CONLL}, "lexicon": {"terms.tsv": "北京\tLOC\n"}})
    assert plan_job(JobEnvironment.load(env)).args.lexicon == f"jieba,{tmp_path / 'b/input/data/lexicon/terms.tsv'}"


def test_multi_host_builds_tf_config_and_only_the_chief_writes_the_model(tmp_path):
    env = make_tree(tmp_path / "ml", {}, {"training": {"train.txt": CONLL}},
                    hosts=["algo-2", "algo-1"], current="algo-2")
    job = JobEnvironment.load(env)
    assert not job.is_chief
    config = tf_config_for(job, {})
    assert config == {"cluster": {"worker": ["algo-1:2222", "algo-2:2222"]}, "task": {"type": "worker", "index": 1}}
    addresses = {"ALBERT_NER_WORKER_ADDRESSES": json.dumps({"algo-1": "127.0.0.1:1", "algo-2": "127.0.0.1:2"})}
    assert tf_config_for(job, addresses)["cluster"]["worker"] == ["127.0.0.1:1", "127.0.0.1:2"]
    args = plan_job(job).args
    assert Path(args.output_dir) != tmp_path / "ml" / "model" and args.export is False


def test_script_arguments_parse_as_strings():
    assert parse_script_args(["--max_steps", "60", "--model_dir", "s3://b/p", "--resume=true", "--export"]) == {
        "max_steps": "60", "model_dir": "s3://b/p", "resume": "true", "export": "true"}
    with pytest.raises(ValueError, match="stray"):
        parse_script_args(["stray"])


# ---------------------------------------------------------------------------- failures, end to end
def failed_job(tmp_path, hyperparameters, channels, **options):
    result = run_local_job(tmp_path / "job", hyperparameters, channels, timeout=120, **options)
    failure = result.host_root() / "output" / "failure"
    assert not result.ok and result.exit_codes["algo-1"] != 0
    assert failure.exists(), "the job must explain itself in output/failure"
    lines = failure.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 and lines[0] == result.failure
    return lines[0]


def test_bad_hyperparameter_fails_the_job_with_a_reason(synthetic_data, tmp_path):
    reason = failed_job(tmp_path, {"max_steps": "ten", "model_config": "micro"},
                        {"training": synthetic_data["train"].parent})
    assert "max_steps" in reason and "ten" in reason


def test_missing_training_channel_fails_the_job_with_a_reason(synthetic_data, tmp_path):
    # Also the image's entrypoint with no argument, as SDK v3 local mode starts it.
    reason = failed_job(tmp_path, {"max_steps": "2"}, {"validation": synthetic_data["dev"]},
                        train_command=[sys.executable, str(REPO_TRAIN_ENTRYPOINT)])
    assert "training" in reason


def test_unreadable_data_file_fails_the_job_with_a_reason(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.txt").write_bytes("中\tB-LOC\n".encode() + b"\xff\xfe\x00garbage\tO\n\n")
    reason = failed_job(tmp_path, {"max_steps": "2", "model_config": "micro"}, {"training": data})
    assert "train.txt:2" in reason and "Traceback" not in reason


# ---------------------------------------------------------------------------- packaging
def test_job_side_never_imports_the_sagemaker_sdk():
    code = (
        "import sys, albert_ner.sagemaker.contract, albert_ner.sagemaker.job, albert_ner.sagemaker.entry_point, "
        "albert_ner.sagemaker.local_runner, albert_ner.sagemaker.source_dir, albert_ner.train.loop\n"
        "bad = sorted(m for m in sys.modules if m == 'sagemaker' or m.startswith(('sagemaker.', 'boto')))\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_image_dispatches_train_and_serve():
    dockerfile = (REPO / "container" / "Dockerfile").read_text()
    assert dockerfile.rstrip().endswith('ENTRYPOINT []\nCMD ["train"]')
    assert "COPY container/train" in dockerfile and 'PATH="/opt/ml/code:' in dockerfile
    script = REPO / "container" / "build_and_push.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    usage = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, check=True).stdout
    assert "--no-push" in usage


def test_local_runner_cli_reports_the_failure(synthetic_data, tmp_path, capsys):
    from albert_ner.sagemaker.local_runner import main

    code = main(["--job-dir", str(tmp_path / "job"), "--channel", f"training={synthetic_data['train'].parent}",
                 "--hp", "max_steps=x", "--timeout", "120"])
    out = capsys.readouterr().out
    assert code == 1
    assert "algo-1: exit 1" in out and "failure: hyperparameter max_steps" in out
