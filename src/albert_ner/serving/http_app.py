"""The SageMaker inference server: `docker run IMAGE serve` (BYOC hosting and batch transform).

The hosting contract, as implemented here:

  port          8080; SAGEMAKER_BIND_TO_PORT overrides it, `--port` overrides both
  model         the model directory (see `model_dir.py`) that SageMaker extracts from
                model.tar.gz into /opt/ml/model (root overridable with SAGEMAKER_BASE_DIR,
                as on the training side); `--model-dir` overrides it
  GET  /ping                  200 once the model is loaded; 503 while loading or if it failed
  POST /invocations           texts in, entities out (below)
  GET  /execution-parameters  batch transform asks this for its defaults (MultiRecord)

Request bodies (Content-Type; parameters such as `charset` are ignored, the body is UTF-8):

  text/plain              one text per line
  application/json        {"text": "..."}, {"texts": [...]}, {"instances": [...]} or [...]
                          (list items: strings or {"text": "..."})
  application/jsonlines   one JSON string or {"text": "..."} per line (blank lines skipped)

Responses: JSON input → `application/json` {"predictions": [{"text", "entities"}]}; text and
JSON lines input → `application/jsonlines`, one {"text", "entities"} per input line, so batch
transform can join output to input line by line. `Accept: application/json` or
`application/jsonlines` picks either format explicitly. Every entity is
{"type", "start", "end", "text"} with `text == input[start:end]` (Python string offsets).

Errors are JSON {"error": "..."} naming what was wrong: 400 (bad JSON, bad shape, not UTF-8),
411 (no Content-Length), 413 (body over SAGEMAKER_MAX_PAYLOAD_IN_MB, default 6), 415 (content
type; the message lists the supported ones), 406 (Accept), 503 (model not loaded) and 500
(unexpected; the traceback goes to the log, never to the client). One line per request is
logged to stderr (CloudWatch on SageMaker).

Batch transform sets SAGEMAKER_BATCH=true, SAGEMAKER_BATCH_STRATEGY and
SAGEMAKER_MAX_PAYLOAD_IN_MB; both strategies need nothing special: a SingleRecord request is
a MultiRecord request with one record.

Example:
  python -m albert_ner.serving.http_app --model-dir runs/msra --port 8080
  curl -H 'Content-Type: text/plain' --data-binary $'王小明在北京大学读书。' localhost:8080/invocations
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from albert_ner.sagemaker.contract import JobPaths

DEFAULT_PORT = 8080
DEFAULT_HOST = "0.0.0.0"
ENV_PORT = "SAGEMAKER_BIND_TO_PORT"
ENV_MAX_PAYLOAD = "SAGEMAKER_MAX_PAYLOAD_IN_MB"
ENV_BATCH = "SAGEMAKER_BATCH"
ENV_BATCH_STRATEGY = "SAGEMAKER_BATCH_STRATEGY"
# SageMaker's own limit for a real-time invocation (batch transform allows up to 100).
DEFAULT_MAX_PAYLOAD_MB = 6.0

JSON = "application/json"
JSONLINES = "application/jsonlines"
TEXT = "text/plain"
# Accepted spellings → the canonical type. SageMaker documents application/jsonlines; the
# others are common in clients and cost nothing to accept.
CONTENT_TYPES = {
    JSON: JSON,
    JSONLINES: JSONLINES,
    "application/x-jsonlines": JSONLINES,
    "application/jsonl": JSONLINES,
    TEXT: TEXT,
}
SUPPORTED_CONTENT_TYPES = ", ".join(CONTENT_TYPES)
RESPONSE_TYPES = {JSON: JSON, JSONLINES: JSONLINES, "application/x-jsonlines": JSONLINES,
                  "application/jsonl": JSONLINES}


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a one-line reason for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# ---------------------------------------------------------------------------- request bodies
def media_type(header: str | None) -> str:
    """`application/json; charset=utf-8` → `application/json` (lower case, no parameters)."""
    return (header or "").split(";", 1)[0].strip().lower()


def _text_item(item, where: str) -> str:
    """One input record: a string, or an object with a string "text" (TF Serving style)."""
    if isinstance(item, dict) and "text" in item:
        item = item["text"]
    if not isinstance(item, str):
        raise RequestError(400, f'{where}: expected a string or {{"text": "..."}}, got {_kind(item)}')
    return item


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def _texts_from_json(value) -> list[str]:
    """The texts of one JSON document (the shapes in the module docstring)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [_text_item(item, f"item {i}") for i, item in enumerate(value)]
    if isinstance(value, dict):
        if "text" in value:
            return [_text_item(value, '"text"')]
        for key in ("texts", "instances"):
            if key in value:
                items = value[key]
                if not isinstance(items, list):
                    raise RequestError(400, f'"{key}" must be a list, got {_kind(items)}')
                return [_text_item(item, f"{key}[{i}]") for i, item in enumerate(items)]
        raise RequestError(400, 'JSON object needs a "text", "texts" or "instances" key')
    raise RequestError(400, f'expected a JSON object, list or string, got {_kind(value)}')


def parse_texts(body: bytes, content_type: str) -> list[str]:
    """The texts of a request body; `content_type` is canonical (a value of CONTENT_TYPES)."""
    try:
        # utf-8-sig: a byte-order mark (Windows editors) is not part of the first text.
        decoded = body.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise RequestError(400, f"request body is not UTF-8 ({err.reason} at byte {err.start})") from None
    if content_type == TEXT:
        # Every line is a text, empty ones included, so output lines match input lines.
        return decoded.splitlines()
    if content_type == JSON:
        try:
            value = json.loads(decoded)
        except json.JSONDecodeError as err:
            raise RequestError(400, f"request body is not valid JSON: {err}") from None
        return _texts_from_json(value)
    texts = []
    for number, line in enumerate(decoded.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise RequestError(400, f"line {number} is not valid JSON: {err}") from None
        texts.append(_text_item(value, f"line {number}"))
    return texts


def response_type(accept: str | None, request_type: str) -> str:
    """The response format: the first supported type in Accept, else the input's default."""
    default = JSON if request_type == JSON else JSONLINES
    if not accept:
        return default
    wanted = [media_type(part) for part in accept.split(",")]
    for media in wanted:
        if media in RESPONSE_TYPES:
            return RESPONSE_TYPES[media]
        if media in ("*/*", "application/*", ""):
            return default
    raise RequestError(406, f"cannot answer with {accept!r}; supported: {JSON}, {JSONLINES}")


def encode_predictions(examples, media: str) -> bytes:
    """Predicted `Example`s as a JSON document or as JSON lines (UTF-8, characters unescaped)."""
    records = [
        {"text": ex.text, "entities": [e.to_json(ex.text) for e in ex.entities]} for ex in examples
    ]
    if media == JSON:
        return json.dumps({"predictions": records}, ensure_ascii=False).encode("utf-8")
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


# ---------------------------------------------------------------------------- the model
class ModelState:
    """The predictor, loaded on a background thread so the port is open while TF starts.

    SageMaker polls /ping until it answers 200; answering 503 while loading (rather than not
    listening at all) makes the log show that the container is alive and what it is doing.
    A failed load stays failed: /ping keeps answering 503 with the reason.
    """

    def __init__(self, model_dir: str | os.PathLike):
        self.model_dir = Path(model_dir)
        self.predictor = None
        self.error: str | None = None
        self.done = threading.Event()

    def start(self) -> "ModelState":
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()
        return self

    def _load(self) -> None:
        started = time.time()
        try:
            from albert_ner.predict import Predictor  # imports numpy; TF loads in from_model_dir

            self.predictor = Predictor.from_model_dir(self.model_dir)
            log(f"model loaded from {self.model_dir} in {time.time() - started:.1f}s")
        except Exception as err:  # noqa: BLE001 — any failure must reach /ping and the log
            self.error = f"model not loaded from {self.model_dir}: {err}"
            log(self.error)
        finally:
            self.done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once loaded; False if loading failed or is still running after `timeout`."""
        self.done.wait(timeout)
        return self.predictor is not None

    @property
    def status(self) -> str:
        if self.predictor is not None:
            return "ready"
        return "failed" if self.done.is_set() else "loading"


def log(message: str) -> None:
    print(f"[albert-ner serve] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- HTTP
class InferenceHandler(BaseHTTPRequestHandler):
    """The three routes; every answer has a Content-Length and every request one log line."""

    server: "InferenceServer"
    server_version = "albert-ner"
    # Keep-alive: SageMaker reuses connections. Requires reading every body we answer, or
    # closing the connection when we refuse one unread (see _refuse_unread).
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 — the http.server naming
        self._started = time.time()
        if self.path == "/ping":
            state = self.server.model
            if state.status == "ready":
                self._send_json(200, {"status": "ready"})
            else:
                body = {"status": state.status}
                if state.error:
                    body["error"] = state.error
                self._send_json(503, body)
        elif self.path == "/execution-parameters":
            # Batch transform's defaults when the job does not set them: many records per
            # request suit the length-bucketed batching of `Predictor`.
            self._send_json(200, {
                "MaxConcurrentTransforms": 1,
                "BatchStrategy": "MultiRecord",
                "MaxPayloadInMB": int(max(1, self.server.max_payload_bytes // 2**20)),
            })
        else:
            self._send_json(404, {"error": f"no route GET {self.path}; try /ping or POST /invocations"})

    def do_POST(self) -> None:  # noqa: N802
        self._started = time.time()
        if self.path != "/invocations":
            self._refuse_unread(404, f"no route POST {self.path}; use /invocations")
            return
        try:
            self._invoke()
        except RequestError as err:
            self._send_json(err.status, {"error": err.message})
        except Exception:  # noqa: BLE001 — the client gets one line, the log the traceback
            log(f"unexpected error on {self.path}:\n{traceback.format_exc().rstrip()}")
            self._send_json(500, {"error": "internal error while predicting (see the endpoint log)"})

    def _invoke(self) -> None:
        body = self._read_body()  # size first: an oversize body is refused before decoding
        header = self.headers.get("Content-Type")
        request_type = CONTENT_TYPES.get(media_type(header))
        if request_type is None:
            got = f"unsupported Content-Type {header!r}" if header else "missing Content-Type"
            raise RequestError(415, f"{got}; supported: {SUPPORTED_CONTENT_TYPES}")
        answer_type = response_type(self.headers.get("Accept"), request_type)
        texts = parse_texts(body, request_type)
        state = self.server.model
        if state.predictor is None:
            raise RequestError(503, state.error or "model is still loading; retry when /ping answers 200")
        examples = state.predictor.predict(texts)
        self._send(200, encode_predictions(examples, answer_type), answer_type, records=len(texts))

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True  # the chunked body stays unread
            raise RequestError(411, "chunked bodies are not supported; send a Content-Length")
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            raise RequestError(411, "Content-Length required")
        try:
            length = int(length_header)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise RequestError(400, f"bad Content-Length {length_header!r}") from None
        limit = self.server.max_payload_bytes
        if length > limit:
            # Not read: closing the connection is cheaper than draining megabytes.
            self.close_connection = True
            raise RequestError(
                413,
                f"payload of {length} bytes exceeds the limit of {limit} bytes "
                f"(set by {ENV_MAX_PAYLOAD})",
            )
        return self.rfile.read(length)

    def _refuse_unread(self, status: int, message: str) -> None:
        """Answers without reading the body, so the connection cannot be reused."""
        self.close_connection = True
        self._send_json(status, {"error": message})

    def _send_json(self, status: int, value: dict) -> None:
        self._send(status, json.dumps(value, ensure_ascii=False).encode("utf-8"), JSON,
                   error=value.get("error"))

    def _send(self, status: int, body: bytes, content_type: str, records: int | None = None,
              error: str | None = None) -> None:
        # One line per request, written before the body so it precedes whatever the client
        # does next; /ping is polled every few seconds, so only its failures show.
        if not (self.path == "/ping" and status == 200):
            line = f'{self.client_address[0]} "{self.command} {self.path}" {status} {len(body)}B'
            if records is not None:
                line += f" {records} texts"
            line += f" {1000 * (time.time() - getattr(self, '_started', time.time())):.0f}ms"
            if error:
                line += f" error: {error}"
            log(line)
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client left; nothing to answer

    def log_request(self, code="-", size="-") -> None:
        """Silenced: `_send` logs each request once, with more useful fields."""

    def log_message(self, format, *args) -> None:  # noqa: A002 — the base class's name
        # Reached only for malformed requests rejected by http.server itself.
        log(f"{self.address_string()} {format % args}")


class InferenceServer(ThreadingHTTPServer):
    """A threading HTTP server holding the model state and the payload limit."""

    daemon_threads = True  # a hung client never blocks shutdown
    allow_reuse_address = True

    def __init__(self, address, model: ModelState, max_payload_bytes: int):
        super().__init__(address, InferenceHandler)
        self.model = model
        self.max_payload_bytes = max_payload_bytes


def max_payload_from_env(environ=None) -> int:
    """SAGEMAKER_MAX_PAYLOAD_IN_MB in bytes (fractions allowed, so tests can use small limits)."""
    env = os.environ if environ is None else environ
    raw = env.get(ENV_MAX_PAYLOAD, "").strip()
    if not raw:
        return int(DEFAULT_MAX_PAYLOAD_MB * 2**20)
    try:
        megabytes = float(raw)
        if megabytes <= 0:
            raise ValueError
    except ValueError:
        raise ValueError(f"{ENV_MAX_PAYLOAD}={raw!r} is not a positive number of megabytes") from None
    return int(megabytes * 2**20)


def create_server(model_dir, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                  max_payload_bytes: int | None = None) -> InferenceServer:
    """Binds the port and starts loading the model; call `serve_forever()` on the result.

    `port=0` picks a free port (`server.server_address[1]`). The payload limit defaults to
    SAGEMAKER_MAX_PAYLOAD_IN_MB, read now rather than at import so tests can set it.
    """
    if max_payload_bytes is None:
        max_payload_bytes = max_payload_from_env()
    state = ModelState(model_dir)
    server = InferenceServer((host, port), state, max_payload_bytes)
    state.start()  # after binding: a port conflict fails before TF spends seconds loading
    return server


def _default_port() -> int:
    raw = os.environ.get(ENV_PORT, "").strip()
    if not raw:
        return DEFAULT_PORT
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{ENV_PORT}={raw!r} is not a port number") from None


def main(argv=None) -> int:
    """`serve [--model-dir DIR] [--port N] [--host H]`: serves until SIGTERM or Ctrl-C."""
    parser = argparse.ArgumentParser(prog="serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", default=None,
                        help="model directory (default: $SAGEMAKER_BASE_DIR/model, i.e. /opt/ml/model)")
    parser.add_argument("--port", type=int, default=None,
                        help=f"port (default: ${ENV_PORT} or {DEFAULT_PORT})")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    args = parser.parse_args(argv)
    model_dir = Path(args.model_dir) if args.model_dir else JobPaths.from_environ().model
    port = args.port if args.port is not None else _default_port()
    try:
        server = create_server(model_dir, args.host, port)
    except (OSError, ValueError) as err:  # port in use, bad payload limit: one line, exit 1
        log(f"cannot start: {err}")
        return 1

    # In a container this is PID 1, which ignores SIGTERM unless a handler is installed;
    # SageMaker stops endpoints with SIGTERM. Raising here unwinds serve_forever cleanly.
    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    batch = os.environ.get(ENV_BATCH, "").lower() == "true"
    mode = f"batch transform ({os.environ.get(ENV_BATCH_STRATEGY, 'MultiRecord')})" if batch else "real-time"
    host, bound_port = server.server_address[:2]
    log(f"serving {model_dir} on http://{host}:{bound_port} ({mode}, max payload "
        f"{server.max_payload_bytes} bytes)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log("stopping")
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
