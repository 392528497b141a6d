"""A Hugging Face safetensors checkpoint without the `safetensors` package installed: one
sentence with the install command, from `resolve_pretrained` and from the CLI, instead of an
ImportError traceback. The missing package is simulated (sys.modules entry None makes
`import safetensors` raise ImportError), so the test runs where safetensors is installed too.
"""

from __future__ import annotations

import json
import sys

import pytest

from albert_ner.checkpoints import CheckpointError, resolve_pretrained


@pytest.fixture
def hf_dir(tmp_path):
    """The files that make a directory a Hugging Face checkpoint. The weights are never read:
    the missing package must be reported before anything tries to."""
    directory = tmp_path / "hf_bert"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 5}), encoding="utf-8")
    (directory / "model.safetensors").write_bytes(b"\0" * 16)
    (directory / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n", encoding="utf-8")
    return directory


@pytest.fixture
def without_safetensors(monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)


def test_missing_safetensors_is_one_sentence_with_the_install_command(hf_dir, without_safetensors):
    with pytest.raises(CheckpointError) as err:
        resolve_pretrained(hf_dir)
    message = str(err.value)
    assert "\n" not in message
    assert str(hf_dir / "model.safetensors") in message
    assert message.endswith("pip install safetensors")
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no chained ImportError


def test_cli_train_reports_the_missing_package_in_one_line(hf_dir, without_safetensors, tmp_path, capsys):
    from albert_ner.cli import main
    from albert_ner.data.synthetic import write_synthetic_split

    files = write_synthetic_split(tmp_path / "data", seed=3, n_train=8, n_dev=4, n_test=4)
    code = main(["train", "--init-checkpoint", str(hf_dir), "--train-file", str(files["train"]),
                 "--output-dir", str(tmp_path / "model"), "--max-steps", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "safetensors" in line]
    assert lines == [f"error: {hf_dir / 'model.safetensors'} is a Hugging Face safetensors checkpoint and "
                     "reading it needs the safetensors package, which is not installed: pip install safetensors"]
