"""Runs the inference app under uvicorn: `albert-ner serve` and the container's `serve`.

  albert-ner serve --model-dir D [--host 127.0.0.1] [--port 8080] [--workers N]
                   [--no-batching] [--max-batch-tokens N] [--batch-timeout-ms MS] [--max-queue N]
  container/serve  (no arguments: /opt/ml/model, 0.0.0.0, port 8080 or $SAGEMAKER_BIND_TO_PORT)

Each uvicorn worker is a process with its own model (`--workers` or
SAGEMAKER_MODEL_SERVER_WORKERS); one worker with dynamic batching keeps both cores of a small
instance busy. SIGTERM (how SageMaker and `docker stop` end a container) stops accepting
connections, lets in-flight requests finish, then exits with status 0. With several workers,
one that dies (SIGKILL, out of memory) is replaced, and /ping says 503 until the replacement
has its model (`serving.supervisor`). Other settings and their environment variables:
`serving.settings`.

Uvicorn picks its C HTTP parser (httptools) and event loop (uvloop) when they are installed
(the `serve` extra): they cut the server's own CPU time per request by 40-50 % (measured
with a stand-in model: 0.25-0.45 ms → 0.12-0.22 ms). Without them it falls back to the
pure-Python h11 and asyncio; the start-up log line says which.

Example:
  albert-ner serve --model-dir runs/msra --port 8080 &
  curl -H 'Content-Type: text/plain' --data-binary $'王小明在北京大学读书。' localhost:8080/invocations
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import shutil
import signal
import sys
import tempfile

from albert_ner.serving.logs import log
from albert_ner.serving.settings import (
    DEFAULT_PORT,
    ENV_BATCH_TIMEOUT_MS,
    ENV_BATCHING,
    ENV_MAX_BATCH_TOKENS,
    ENV_MAX_QUEUE,
    ENV_PREDICT_BATCH_TOKENS,
    ENV_PORT,
    ENV_SETTINGS,
    ENV_WORKERS,
    ServeSettings,
    from_environ,
)

DESCRIPTION = (
    "Serve a model directory over HTTP with SageMaker's hosting contract (GET /ping, "
    "POST /invocations, GET /execution-parameters), merging concurrent requests into one "
    "model call (dynamic batching). Stops on SIGTERM after answering in-flight requests."
)


def add_serve_arguments(parser: argparse.ArgumentParser, container: bool = False) -> None:
    """The serve options; `container=True` gives the image's defaults (/opt/ml/model, 0.0.0.0)."""
    if container:
        parser.add_argument("--model-dir", help="model directory (default: $SAGEMAKER_BASE_DIR/model, i.e. /opt/ml/model)")
    else:
        parser.add_argument("--model-dir", required=True, help="model directory written by `train`")
    host = "0.0.0.0" if container else "127.0.0.1"
    parser.add_argument("--host", default=host, help=f"address to listen on (default {host})")
    parser.add_argument("--port", type=int, help=f"port (default: ${ENV_PORT} or {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--workers", type=int, help=f"server processes, each with its own model (default: ${ENV_WORKERS} or 1)")
    parser.add_argument("--no-batching", dest="batching", action="store_false", default=None,
                        help=f"one model call per request (default: dynamic batching, unless ${ENV_BATCHING}=false)")
    parser.add_argument("--max-batch-tokens", type=int,
                        help=f"characters per merged model call (default: ${ENV_MAX_BATCH_TOKENS} or 8192)")
    parser.add_argument("--batch-timeout-ms", type=float,
                        help=f"longest wait for more requests once a batch has one (default: ${ENV_BATCH_TIMEOUT_MS} or 2)")
    parser.add_argument("--predict-batch-tokens", type=int,
                        help="rows x longest row per TensorFlow call within a merged batch; small keeps long and "
                        f"short sentences apart (default: ${ENV_PREDICT_BATCH_TOKENS}, else 4096 for a model with a "
                        "BiLSTM and 1024 for one without)")
    parser.add_argument("--max-queue", type=int,
                        help="requests that may wait for the model; more get 503 with Retry-After "
                        f"(default: ${ENV_MAX_QUEUE} or 256, per worker)")


def add_serve_parser(subparsers) -> argparse.ArgumentParser:
    """`albert-ner serve` (called by `cli.build_parser`)."""
    parser = subparsers.add_parser("serve", help="serve a model directory over HTTP (SageMaker contract)",
                                   description=DESCRIPTION)
    add_serve_arguments(parser)
    return parser


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    """Command-line options over environment variables over defaults."""
    model_dir = args.model_dir
    if model_dir is None:
        from albert_ner.sagemaker.contract import JobPaths

        model_dir = JobPaths.from_environ().model
    settings = from_environ(model_dir, host=args.host, port=args.port, workers=args.workers,
                            batching=args.batching, max_batch_tokens=args.max_batch_tokens,
                            batch_timeout_ms=args.batch_timeout_ms,
                            predict_batch_tokens=args.predict_batch_tokens,
                            max_queue=args.max_queue)
    if settings.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {settings.workers}")
    if not 0 <= settings.port <= 65535:
        raise ValueError(f"--port must be between 0 and 65535, got {settings.port}")
    if min(settings.max_batch_tokens, settings.predict_batch_tokens or 1, settings.max_queue) < 1 or settings.batch_timeout_ms < 0:
        raise ValueError("--max-batch-tokens, --predict-batch-tokens and --max-queue must be at least 1, "
                         "--batch-timeout-ms not negative")
    return settings


def _stop(signum, frame):
    """SIGTERM before uvicorn takes over, and the one uvicorn re-raises after draining."""
    raise KeyboardInterrupt


def serve(settings: ServeSettings) -> int:
    """Serves until SIGTERM or Ctrl-C; 0 after a clean stop, 1 when it cannot start."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            if not self.should_exit:
                log(f"{signal.Signals(sig).name}: no new connections; finishing "
                    f"{len(self.server_state.tasks)} in-flight request(s)")
            super().handle_exit(sig, frame)

    # A container's PID 1 ignores SIGTERM without a handler; uvicorn installs its own while
    # it runs and re-raises the signal afterwards, which `_stop` turns into a clean exit.
    signal.signal(signal.SIGTERM, _stop)
    # http/loop "auto": httptools and uvloop when installed, else h11 and asyncio.
    options = dict(host=settings.host, port=settings.port, log_level="warning", access_log=False,
                   lifespan="on", timeout_graceful_shutdown=None, http="auto", loop="auto")
    try:
        if settings.workers > 1:
            return _serve_workers(settings, options)
        from albert_ner.serving.app import create_app

        config = uvicorn.Config(create_app(settings), **options)
        try:
            sock = config.bind_socket()  # before the model loads: a port conflict fails at once
        except SystemExit:  # uvicorn logged why (address in use, permission)
            log(f"cannot listen on {settings.host}:{settings.port}")
            return 1
        _log_start(settings, sock.getsockname()[1])
        server = Server(config)
        server.run(sockets=[sock])
        return 0 if server.started else 1
    except KeyboardInterrupt:
        return 0
    finally:
        log("stopped")


def _serve_workers(settings: ServeSettings, options: dict) -> int:
    """--workers N > 1: uvicorn's worker processes under our `Supervisor`, which replaces a
    dead worker and keeps the shared readiness directory true (`serving.supervisor`)."""
    import uvicorn

    from albert_ner.serving.readiness import ReadinessBoard
    from albert_ner.serving.supervisor import Supervisor

    # Workers are new processes: they rebuild the app from the environment, and record
    # their loads in a shared directory so /ping waits for all of them.
    ready_dir = tempfile.mkdtemp(prefix="albert-ner-workers-")
    try:
        os.environ[ENV_SETTINGS] = dataclasses.replace(settings, ready_dir=ready_dir).to_json()
        config = uvicorn.Config("albert_ner.serving.app:app_from_environ", factory=True,
                                workers=settings.workers, **options)
        try:
            sock = config.bind_socket()  # as uvicorn.run does, but a port conflict returns 1
        except SystemExit:
            log(f"cannot listen on {settings.host}:{settings.port}")
            return 1
        _log_start(settings, sock.getsockname()[1])
        Supervisor(config, [sock], ReadinessBoard(ready_dir, settings.workers)).run()
        return 0
    finally:
        shutil.rmtree(ready_dir, ignore_errors=True)


def http_stack() -> str:
    """What uvicorn's "auto" picks here: "httptools, uvloop" or the fallback "h11, asyncio"."""

    def importable(name: str) -> bool:
        try:  # as uvicorn decides: by importing, not by finding (a broken install falls back)
            importlib.import_module(name)
            return True
        except ImportError:
            return False

    return f"{'httptools' if importable('httptools') else 'h11'}, {'uvloop' if importable('uvloop') else 'asyncio'}"


def _log_start(settings: ServeSettings, port: int) -> None:
    log(f"serving {settings.model_dir} on http://{settings.host}:{port} ({settings.mode}, "
        f"{settings.workers} worker(s), max payload {settings.max_payload_bytes} bytes, "
        f"queue limit {settings.max_queue}, {http_stack()})")


def main(argv: list[str] | None = None, container: bool = False) -> int:
    """`serve [options]` as a program; `container=True` for the image's entrypoint."""
    parser = argparse.ArgumentParser(prog="serve", description=DESCRIPTION)
    add_serve_arguments(parser, container=container)
    try:
        settings = settings_from_args(parser.parse_args(argv))
    except ValueError as err:
        log(f"cannot start: {err}")
        return 2
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
