"""Server settings: defaults, then environment variables, then command-line options.

  setting            environment variable               option                default
  port               SAGEMAKER_BIND_TO_PORT             --port                8080
  workers            SAGEMAKER_MODEL_SERVER_WORKERS     --workers             1
  payload limit      SAGEMAKER_MAX_PAYLOAD_IN_MB        (none)                6 MB
  dynamic batching   ALBERT_NER_BATCHING (true/false)   --no-batching         on
  batch budget       ALBERT_NER_MAX_BATCH_TOKENS        --max-batch-tokens    8192 characters
  batch wait         ALBERT_NER_BATCH_TIMEOUT_MS        --batch-timeout-ms    2 ms
  model-call padding ALBERT_NER_PREDICT_BATCH_TOKENS    --predict-batch-tokens by model (below)
  queue limit        ALBERT_NER_MAX_QUEUE               --max-queue           256 requests

The SAGEMAKER_* variables are the ones SageMaker sets in a hosting or batch-transform
container; the ALBERT_NER_* ones play the role of TF Serving's batching options. Settings
travel to uvicorn's worker processes as JSON in ALBERT_NER_SERVE_SETTINGS. The queue limit
is per worker: beyond it a request gets 503 with a Retry-After header (`serving.batcher`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping

from albert_ner.serving.batcher import DEFAULT_BATCH_TIMEOUT_MS, DEFAULT_MAX_BATCH_TOKENS, DEFAULT_MAX_QUEUE

ENV_PORT = "SAGEMAKER_BIND_TO_PORT"
ENV_WORKERS = "SAGEMAKER_MODEL_SERVER_WORKERS"
ENV_MAX_PAYLOAD = "SAGEMAKER_MAX_PAYLOAD_IN_MB"
ENV_BATCH = "SAGEMAKER_BATCH"
ENV_BATCH_STRATEGY = "SAGEMAKER_BATCH_STRATEGY"
ENV_BATCHING = "ALBERT_NER_BATCHING"
ENV_MAX_BATCH_TOKENS = "ALBERT_NER_MAX_BATCH_TOKENS"
ENV_BATCH_TIMEOUT_MS = "ALBERT_NER_BATCH_TIMEOUT_MS"
ENV_PREDICT_BATCH_TOKENS = "ALBERT_NER_PREDICT_BATCH_TOKENS"
ENV_MAX_QUEUE = "ALBERT_NER_MAX_QUEUE"
ENV_SETTINGS = "ALBERT_NER_SERVE_SETTINGS"

DEFAULT_PORT = 8080
# SageMaker's own limit for a real-time invocation (batch transform allows up to 100).
DEFAULT_MAX_PAYLOAD_MB = 6.0
# Rows × longest row per TensorFlow call inside a merged batch (`Predictor.batch_tokens`),
# unless set: it depends on the model. Every row pays for the longest row's windows, so a
# small budget keeps long and short sentences in separate calls — right for a transformer,
# whose cost grows with the padded size: ALBERT-tiny served 115 req/s at 1024 and 103 at
# 4096. A BiLSTM (and the CRF) pay per time step whatever the rows, so one wide call beats
# several narrow ones: the default BiLSTM-CRF served 464 req/s at 4096 and 403 at 1024
# (benchmarks/load_test.py, 16 clients, BENCHMARKS.md).
TRANSFORMER_PREDICT_BATCH_TOKENS = 1024
RECURRENT_PREDICT_BATCH_TOKENS = 4096


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """Everything the server needs; `from_environ` fills what the command line leaves out."""

    model_dir: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 1
    max_payload_bytes: int = int(DEFAULT_MAX_PAYLOAD_MB * 2**20)
    batching: bool = True
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS
    batch_timeout_ms: float = DEFAULT_BATCH_TIMEOUT_MS
    predict_batch_tokens: int | None = None  # None = by model (`predict_batch_tokens_for`)
    max_queue: int = DEFAULT_MAX_QUEUE
    # SAGEMAKER_BATCH / SAGEMAKER_BATCH_STRATEGY: only logged (both strategies need nothing special)
    batch_transform: str | None = None
    # Set by `serve` for several workers: where each records its load (`serving.readiness`).
    ready_dir: str | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ServeSettings":
        return cls(**json.loads(text))

    @property
    def mode(self) -> str:
        return f"batch transform ({self.batch_transform})" if self.batch_transform else "real-time"


def predict_batch_tokens_for(model_dir) -> int:
    """The model-call padding budget that suits the model in `model_dir` (see the constants)."""
    from albert_ner.model_dir import ModelDir

    config = ModelDir(model_dir).load_model_config()
    return RECURRENT_PREDICT_BATCH_TOKENS if config.get("lstm_units") else TRANSFORMER_PREDICT_BATCH_TOKENS


def _number(environ: Mapping[str, str], name: str, kind, minimum):
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise ValueError(f"{name}={raw!r} is not a {kind.__name__} of at least {minimum}")
    return value


def _flag(environ: Mapping[str, str], name: str) -> bool | None:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return None
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={raw!r} is not true or false")


def from_environ(model_dir, environ: Mapping[str, str] | None = None, **options) -> ServeSettings:
    """Settings from the environment, with `options` (not None) taking precedence.

    Raises:
        ValueError: an environment variable that is not a valid value (named in the message).
    """
    env = os.environ if environ is None else environ
    megabytes = _number(env, ENV_MAX_PAYLOAD, float, 1e-6)
    batch = _flag(env, ENV_BATCH)
    values = {
        "port": _number(env, ENV_PORT, int, 0),
        "workers": _number(env, ENV_WORKERS, int, 1),
        "max_payload_bytes": None if megabytes is None else int(megabytes * 2**20),
        "batching": _flag(env, ENV_BATCHING),
        "max_batch_tokens": _number(env, ENV_MAX_BATCH_TOKENS, int, 1),
        "batch_timeout_ms": _number(env, ENV_BATCH_TIMEOUT_MS, float, 0.0),
        "predict_batch_tokens": _number(env, ENV_PREDICT_BATCH_TOKENS, int, 1),
        "max_queue": _number(env, ENV_MAX_QUEUE, int, 1),
        "batch_transform": env.get(ENV_BATCH_STRATEGY, "MultiRecord") if batch else None,
    }
    values.update({k: v for k, v in options.items() if v is not None})  # an option left out keeps the env
    return ServeSettings(model_dir=str(model_dir), **{k: v for k, v in values.items() if v is not None})
