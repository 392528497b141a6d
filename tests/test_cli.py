"""The CLI contract other tools rely on: subcommands, option spellings, help texts."""

from __future__ import annotations

import pytest

from albert_ner.cli import build_parser, main

CONTRACT = {
    "train": ["--train-file", "--dev-file", "--output-dir", "--model-config", "--init-checkpoint",
              "--max-steps", "--epochs", "--eval-every", "--batch-size", "--max-seq-length",
              "--learning-rate", "--seed", "--resume"],
    "evaluate": ["--model-dir", "--data-file", "--json"],
    "predict": ["--model-dir", "--input"],
    "export": ["--model-dir"],
}


@pytest.mark.parametrize("command", sorted(CONTRACT))
def test_help_lists_every_contract_option(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in CONTRACT[command]:
        assert option in text, option


@pytest.mark.parametrize("action", ["stats", "validate", "convert"])
def test_data_actions_have_help(action, capsys):
    with pytest.raises(SystemExit):
        main(["data", action, "--help"])
    assert "file" in capsys.readouterr().out


def test_every_option_has_a_help_text():
    parser = build_parser()
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:
            if action.choices and isinstance(action.choices, dict):
                stack.extend(action.choices.values())
            elif action.dest not in ("help", "version"):
                assert action.help, f"{p.prog} {action.option_strings or action.dest} has no help"


def test_max_steps_and_epochs_are_exclusive(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--train-file", "a", "--output-dir", "b", "--max-steps", "3", "--epochs", "1"])
    assert "not allowed with" in capsys.readouterr().err


def test_data_stats_validate_convert(synthetic_data, tmp_path, capsys):
    assert main(["data", "stats", str(synthetic_data["train"])]) == 0
    out = capsys.readouterr().out
    assert "sentences" in out and "PER" in out
    assert main(["data", "validate", str(synthetic_data["train"])]) == 0
    assert "OK" in capsys.readouterr().out
    target = tmp_path / "train.jsonl"
    assert main(["data", "convert", str(synthetic_data["train"]), "--to", "jsonl", "--output", str(target)]) == 0
    assert main(["data", "validate", str(target)]) == 0
