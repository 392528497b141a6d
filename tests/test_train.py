"""Training: the curve rises, a killed run resumes exactly, other schemes/labels just work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from albert_ner.cli import main
from albert_ner.data.readers import read_conll
from albert_ner.data.writers import write_conll
from albert_ner.model_dir import ModelDir

TIMING_KEYS = {"samples_per_sec", "wall_time", "eval_seconds"}


def metrics_without_timing(model_dir) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in ModelDir(model_dir).read_metrics()]


def train_argv(data: dict, out: Path, *extra: str) -> list[str]:
    return [
        "train", "--train-file", str(data["train"]), "--dev-file", str(data["dev"]),
        "--output-dir", str(out), "--model-config", "micro", "--batch-size", "16",
        "--max-seq-length", "40", "--log-every", "10", *extra,
    ]


def test_trained_model_learns_and_writes_model_dir(trained_model):
    md = ModelDir(trained_model)
    records = md.read_metrics()
    assert [r["step"] for r in records] == [50, 100, 150]
    for key in ("step", "epoch", "loss", "eval_f", "eval_precision", "eval_recall", "entity_f1",
                "entity_precision", "entity_recall", "per_type", "samples_per_sec"):
        assert key in records[-1], key
    assert set(records[-1]["per_type"]) == {"LOC", "ORG", "PER"}
    # The curve rises: generated data is learnable in 150 steps.
    assert records[-1]["entity_f1"] > records[0]["entity_f1"] + 0.2
    assert records[-1]["entity_f1"] > 0.5
    for path in (md.labels, md.vocab, md.config, md.weights, md.training_args, md.final_metrics,
                 md.saved_model / "saved_model.pb"):
        assert path.exists(), path
    final = json.loads(md.final_metrics.read_text())
    assert final["best_entity_f1"] == max(r["entity_f1"] for r in records)


def test_eval_lines_in_article_log_format(synthetic_data, tmp_path, capsys):
    assert main(train_argv(synthetic_data, tmp_path / "m", "--max-steps", "4", "--eval-every", "2",
                           "--no-export")) == 0
    out = capsys.readouterr().out
    assert "eval_f = " in out and "entity_f1 = " in out and "global_step = 4" in out
    assert not (tmp_path / "m" / "1").exists()


@pytest.mark.slow
def test_killed_run_resumes_to_identical_metrics(synthetic_data, tmp_path):
    steps = ["--max-steps", "60", "--eval-every", "10", "--no-export", "--seed", "5"]
    # The uninterrupted reference run, in this process.
    assert main(train_argv(synthetic_data, tmp_path / "full", *steps)) == 0

    # The same run in a child process, killed hard once it has written a few evaluations.
    killed = tmp_path / "killed"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    child = subprocess.Popen(
        [sys.executable, "-m", "albert_ner.cli", *train_argv(synthetic_data, killed, *steps)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while time.time() < deadline and child.poll() is None:
        if len(ModelDir(killed).read_metrics()) >= 3:
            break
        time.sleep(0.2)
    assert child.poll() is None, "the child finished before it could be killed; slow it down"
    child.send_signal(signal.SIGKILL)
    child.wait()
    state = json.loads((killed / "checkpoints" / "latest" / "state.json").read_text())
    assert 0 < state["step"] < 60

    assert main(train_argv(synthetic_data, killed, *steps, "--resume")) == 0
    assert metrics_without_timing(killed) == metrics_without_timing(tmp_path / "full")


def test_bmes_data_with_new_types_trains_without_code_change(synthetic_data, tmp_path):
    # Rename the three generated types into eight made-up ones and write BMES tags.
    names = ["DRUG", "DISEASE", "SYMPTOM", "GENE", "DOSE", "ORGAN", "TEST", "HOSPITAL"]
    examples = read_conll(synthetic_data["train"]).examples[:200]
    for n, example in enumerate(examples):
        example.entities = [
            type(e)(e.start, e.end, names[(n + i) % len(names)]) for i, e in enumerate(example.entities)
        ]
    write_conll(examples, tmp_path / "train.bmes", scheme="bmes")
    write_conll(examples[:40], tmp_path / "dev.bmes", scheme="bmes")
    data = {"train": tmp_path / "train.bmes", "dev": tmp_path / "dev.bmes"}
    out = tmp_path / "bmes_model"
    assert main(train_argv(data, out, "--max-steps", "6", "--eval-every", "6", "--tag-scheme", "bioes")) == 0
    labels = json.loads((out / "labels.json").read_text())
    assert labels["types"] == sorted(names)
    assert len(labels["tags"]) == 1 + 4 * len(names)
    assert set(ModelDir(out).read_metrics()[-1]["per_type"]) == set(names)


def test_softmax_head_reproduces_article_setup(synthetic_data, tmp_path):
    out = tmp_path / "softmax"
    assert main(train_argv(synthetic_data, out, "--max-steps", "4", "--eval-every", "4", "--head", "softmax",
                           "--no-export")) == 0
    config = json.loads((out / "model_config.json").read_text())
    assert config["head"] == "softmax"
    assert "entity_f1" in ModelDir(out).read_metrics()[-1]


def test_bad_training_file_is_one_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("中\tO\n国\tB-LOC\textra\n\n", encoding="utf-8")
    code = main(["train", "--train-file", str(bad), "--output-dir", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 2
    assert "bad.txt:2" in err and "Traceback" not in err


def test_training_without_a_dev_set_still_leaves_a_model(synthetic_data, tmp_path):
    """No dev file: the best model is the one with the lowest training loss (first eval saves)."""
    out = tmp_path / "nodev"
    argv = ["train", "--train-file", str(synthetic_data["train"]), "--output-dir", str(out),
            "--model-config", "micro", "--batch-size", "16", "--max-seq-length", "40",
            "--max-steps", "4", "--eval-every", "2", "--log-every", "2"]
    assert main(argv) == 0
    md = ModelDir(out)
    assert md.weights.exists() and (md.saved_model / "saved_model.pb").exists()
    assert json.loads(md.final_metrics.read_text())["best_step"] in (2, 4)
