"""Server settings: defaults < environment (SageMaker's and ours) < command-line options."""

from __future__ import annotations

import json

import pytest

from albert_ner.cli import build_parser
from albert_ner.serving.server import main, settings_from_args
from albert_ner.serving.settings import ServeSettings, from_environ

ENV = {
    "SAGEMAKER_BIND_TO_PORT": "9000",
    "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
    "SAGEMAKER_MAX_PAYLOAD_IN_MB": "0.5",
    "ALBERT_NER_BATCHING": "false",
    "ALBERT_NER_MAX_BATCH_TOKENS": "100",
    "ALBERT_NER_BATCH_TIMEOUT_MS": "10",
    "ALBERT_NER_PREDICT_BATCH_TOKENS": "2048",
    "ALBERT_NER_MAX_QUEUE": "32",
}


def test_defaults():
    s = from_environ("m", {})
    assert (s.port, s.workers, s.max_payload_bytes, s.batching) == (8080, 1, 6 * 2**20, True)
    assert (s.max_batch_tokens, s.batch_timeout_ms, s.predict_batch_tokens, s.max_queue) == (8192, 2.0, None, 256)
    assert s.mode == "real-time"


def test_model_call_padding_defaults_by_model(tmp_path):
    from albert_ner.serving.settings import (
        RECURRENT_PREDICT_BATCH_TOKENS, TRANSFORMER_PREDICT_BATCH_TOKENS, predict_batch_tokens_for,
    )

    for name, lstm_units, expected in [("bilstm", 128, RECURRENT_PREDICT_BATCH_TOKENS),
                                       ("albert", 0, TRANSFORMER_PREDICT_BATCH_TOKENS),
                                       ("old", None, TRANSFORMER_PREDICT_BATCH_TOKENS)]:
        config = {"encoder": {}, "head": "crf"}
        if lstm_units is not None:
            config["lstm_units"] = lstm_units
        (tmp_path / name).mkdir()
        (tmp_path / name / "model_config.json").write_text(json.dumps(config))
        assert predict_batch_tokens_for(tmp_path / name) == expected
    assert RECURRENT_PREDICT_BATCH_TOKENS > TRANSFORMER_PREDICT_BATCH_TOKENS


def test_the_environment_fills_what_options_leave_out():
    s = from_environ("m", ENV, port=None, workers=None, batching=None, max_batch_tokens=None,
                     batch_timeout_ms=None, predict_batch_tokens=None, max_queue=None)
    assert (s.port, s.workers, s.max_payload_bytes, s.batching) == (9000, 3, 2**19, False)
    assert (s.max_batch_tokens, s.batch_timeout_ms, s.predict_batch_tokens, s.max_queue) == (100, 10.0, 2048, 32)


def test_options_win_over_the_environment():
    s = from_environ("m", ENV, port=7, workers=1, batching=True, batch_timeout_ms=0.0, max_queue=4)
    assert (s.port, s.workers, s.batching, s.batch_timeout_ms, s.max_queue) == (7, 1, True, 0.0, 4)


def test_the_queue_limit_option_reaches_the_settings():
    args = build_parser().parse_args(["serve", "--model-dir", "m", "--max-queue", "8"])
    assert settings_from_args(args).max_queue == 8


def test_batch_transform_mode_is_logged_by_strategy():
    s = from_environ("m", {"SAGEMAKER_BATCH": "true", "SAGEMAKER_BATCH_STRATEGY": "SingleRecord"})
    assert s.mode == "batch transform (SingleRecord)"
    assert from_environ("m", {"SAGEMAKER_BATCH": "true"}).mode == "batch transform (MultiRecord)"


@pytest.mark.parametrize("name,value", [("SAGEMAKER_BIND_TO_PORT", "http"), ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "-1"),
                                        ("SAGEMAKER_MODEL_SERVER_WORKERS", "0"), ("ALBERT_NER_BATCHING", "maybe"),
                                        ("ALBERT_NER_MAX_QUEUE", "0")])
def test_a_bad_variable_is_named(name, value):
    with pytest.raises(ValueError, match=name):
        from_environ("m", {name: value})


def test_settings_reach_worker_processes_as_json():
    s = from_environ("m", ENV)
    assert ServeSettings.from_json(s.to_json()) == s


def test_bad_options_end_with_status_2(capsys):
    assert main(["--model-dir", "m", "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
    assert main(["--model-dir", "m", "--max-queue", "0"]) == 2
    assert "--max-queue must be at least 1" in capsys.readouterr().err
