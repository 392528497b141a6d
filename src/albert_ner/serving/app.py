"""The ASGI application: SageMaker's hosting routes over a `DynamicBatcher` (starlette).

  GET  /ping                  200 once the model is loaded and warmed up (with several
                              workers: in every worker, `serving.readiness`), with the
                              batcher's counters; 503 while loading or after a failed load
                              ({"status", "error"}: the reason). One of several workers
                              accepts connections only once its model is loaded.
  POST /invocations           texts in, entities out (formats: `serving.requests`)
  GET  /execution-parameters  batch transform's defaults (MultiRecord, payload limit)

Statuses, each with a JSON body {"error": "..."} that says what was wrong: 400 (bad JSON,
bad shape, empty body, not UTF-8), 404/405 (route), 406 (Accept), 411 (no Content-Length and
not chunked), 413 (body over the payload limit; the connection is closed), 415 (Content-Type;
the message lists the supported ones), 503 (model not ready, or too many requests already
waiting for the model: then with a Retry-After header) and 500 (unexpected; the traceback
goes to the log, never to the client). Every request gets one log line on stderr
(successful /ping polls excepted: SageMaker sends one every few seconds).

Example (the app alone; `serving.server` runs it under uvicorn):
  app = create_app(ServeSettings(model_dir="runs/msra"))
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import traceback

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from albert_ner.serving.batcher import DynamicBatcher, ModelNotReady, Overloaded
from albert_ner.serving.logs import log
from albert_ner.serving.readiness import ReadinessBoard
from albert_ner.serving.requests import (
    CONTENT_TYPES,
    JSON,
    SUPPORTED_CONTENT_TYPES,
    RequestError,
    encode_records,
    media_type,
    output_records,
    parse_body,
    response_type,
)
from albert_ner.serving.settings import (
    ENV_MAX_PAYLOAD, ENV_MAX_QUEUE, ENV_PREDICT_BATCH_TOKENS, ENV_SETTINGS, ServeSettings, predict_batch_tokens_for,
)

# Bodies larger than this are parsed and encoded on a worker thread, so a 6 MB batch-transform
# payload does not stall the event loop (and /ping) for the tens of milliseconds json takes.
OFFLOAD_BYTES = 256 * 1024
# An oversize body is read and dropped up to this size before the 413, then the connection
# is closed: enough for any client that merely exceeded the limit, bounded for any other.
DISCARD_BYTES = 64 * 2**20
_LOG_KEY = "albert_ner.log"  # per-request notes for the log line, kept in the ASGI scope


def _json(status: int, value: dict, request: Request | None = None, **headers) -> Response:
    """A JSON response; an "error" in it goes to the request's log line too."""
    if request is not None and "error" in value:
        request.scope.setdefault(_LOG_KEY, {})["error"] = value["error"]
    body = json.dumps(value, ensure_ascii=False).encode("utf-8")
    return Response(body, status, headers=headers or None, media_type=JSON)


def _load_predictor(model_dir: str, batch_tokens: int | None):
    """Runs on the model thread: TensorFlow is imported there, not at server start.

    batch_tokens None = the model's own default (`settings.predict_batch_tokens_for`).
    """
    from albert_ner.predict import Predictor

    if batch_tokens is None:
        batch_tokens = predict_batch_tokens_for(model_dir)
        log(f"model calls of up to {batch_tokens} padded characters (the default for this model; "
            f"set {ENV_PREDICT_BATCH_TOKENS} or --predict-batch-tokens to change)")
    return Predictor.from_model_dir(model_dir, batch_tokens=batch_tokens)


def create_app(settings: ServeSettings, batcher: DynamicBatcher | None = None) -> Starlette:
    """The application for `settings`; the model starts loading when the server starts.

    Args:
        settings: model directory, payload limit and batching options.
        batcher: a ready-made batcher (tests inject one over a stand-in predictor).
    """
    if batcher is None:
        batcher = DynamicBatcher(
            lambda: _load_predictor(settings.model_dir, settings.predict_batch_tokens),
            max_batch_tokens=settings.max_batch_tokens,
            batch_timeout_s=settings.batch_timeout_ms / 1000,
            enabled=settings.batching,
            source=settings.model_dir,
            max_queue=settings.max_queue,
        )

    # With several workers, /ping also waits for the others (`serving.readiness`).
    board = ReadinessBoard(settings.ready_dir, settings.workers)

    async def ping(request: Request) -> Response:
        status = batcher.status
        others = board.not_ready_reason() if status == "ready" else None
        if others is not None:
            return _json(503, {"status": "loading", "error": others}, request)
        if status == "ready":
            # Counters since start: merging (texts per model call), model time, refusals.
            return _json(200, {"status": status, "model_calls": batcher.model_calls,
                               "requests": batcher.requests, "texts": batcher.texts,
                               "model_seconds": round(batcher.model_seconds, 3),
                               "waiting": batcher.waiting, "rejected": batcher.rejected})
        return _json(503, {"status": status, "error": batcher.error or
                           f"model in {settings.model_dir} is still loading"}, request)

    async def execution_parameters(request: Request) -> Response:
        # Batch transform's defaults when the job does not set them. MultiRecord: many
        # records per request fill a model call on their own. Two requests in flight per
        # worker keep the model busy while the previous answer is being sent.
        return _json(200, {
            "MaxConcurrentTransforms": 2 * settings.workers,
            "BatchStrategy": "MultiRecord",
            "MaxPayloadInMB": max(1, settings.max_payload_bytes // 2**20),
        })

    async def invocations(request: Request) -> Response:
        try:
            return await _invoke(request)
        except RequestError as err:
            headers = {"Connection": "close"} if err.status in (411, 413) else {}
            return _json(err.status, {"error": err.message}, request, **headers)
        except ModelNotReady as err:
            return _json(503, {"error": str(err)}, request)
        except Overloaded as err:
            return _json(503, {"error": f"{err} (the limit is set by {ENV_MAX_QUEUE} or --max-queue)"},
                         request, **{"Retry-After": str(err.retry_after)})
        except Exception:  # noqa: BLE001 — the client gets one line, the log the traceback
            log(f"unexpected error on {request.url.path}:\n{traceback.format_exc().rstrip()}")
            return _json(500, {"error": "internal error while predicting (see the endpoint log)"}, request)

    async def _invoke(request: Request) -> Response:
        body = await _read_body(request, settings.max_payload_bytes)
        header = request.headers.get("content-type")
        request_type = CONTENT_TYPES.get(media_type(header))
        if request_type is None:
            got = f"unsupported Content-Type {header!r}" if header else "missing Content-Type"
            raise RequestError(415, f"{got}; supported: {SUPPORTED_CONTENT_TYPES}")
        large = len(body) > OFFLOAD_BYTES
        parsed = await asyncio.to_thread(parse_body, body, request_type) if large else parse_body(body, request_type)
        answer_type = response_type(request.headers.get("accept"), parsed.default_type)
        request.scope.setdefault(_LOG_KEY, {})["records"] = len(parsed.records)
        examples = await batcher.predict(parsed.texts) if parsed.texts else []
        records = output_records(parsed.records, examples)
        out = await asyncio.to_thread(encode_records, records, answer_type) if large else encode_records(records, answer_type)
        return Response(out, 200, media_type=answer_type)

    async def not_found(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}; use GET /ping or POST /invocations"
        else:
            message = f"{request.method} {request.url.path}: {exc.detail}"
        return _json(exc.status_code, {"error": message}, request)

    async def record_outcome():
        await asyncio.to_thread(batcher.loaded.wait)
        board.record(batcher.error)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        batching = (f"dynamic batching up to {settings.max_batch_tokens} characters, "
                    f"{settings.batch_timeout_ms:g} ms wait" if settings.batching else "no batching")
        log(f"loading {settings.model_dir} ({batching})")
        recording = None
        if board.directory is None:
            # A single worker answers /ping (503) and requests while it loads.
            recording = asyncio.create_task(record_outcome())
        else:
            # One of several workers takes connections only once its model is in. They share
            # one listening socket, so whatever a loading worker accepted would get a 503
            # while the others could answer it — every request a replacement for a dead
            # worker took during its load. Uvicorn starts accepting after this startup part.
            await record_outcome()
        yield
        board.withdraw()
        if recording is not None:
            recording.cancel()
        # Uvicorn calls this after in-flight requests have been answered; the queue is
        # empty by then, `close` only stops the model thread.
        await asyncio.to_thread(batcher.close, 60)
        log(f"stopped after {batcher.requests} requests in {batcher.model_calls} model calls")

    app = Starlette(
        routes=[
            Route("/ping", ping, methods=["GET"]),
            Route("/execution-parameters", execution_parameters, methods=["GET"]),
            Route("/invocations", invocations, methods=["POST"]),
        ],
        exception_handlers={HTTPException: not_found},
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    app.state.settings = settings
    return RequestLog(app)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, or a 413 once it is known to exceed `limit` bytes.

    An oversize body is read and dropped (up to DISCARD_BYTES) before answering: a client
    still sending when the connection closes would see a reset instead of the 413.
    """
    length_header = request.headers.get("content-length")
    chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
    if length_header is None and not chunked:
        raise RequestError(411, "Content-Length required")
    declared = int(length_header) if length_header is not None else None  # uvicorn checked it
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit or (declared or 0) > limit:
            chunks.clear()  # dropped: only counting from here on
            if size > DISCARD_BYTES:
                break
        else:
            chunks.append(chunk)
    if size > limit or (declared or 0) > limit:
        what = f"{declared} bytes" if declared is not None else f"more than {limit} bytes"
        raise RequestError(413, f"payload of {what} exceeds the limit of {limit} bytes (set by {ENV_MAX_PAYLOAD})")
    return b"".join(chunks)


class RequestLog:
    """ASGI middleware: one log line per HTTP request (status, size, records, time, error)."""

    def __init__(self, app):
        self.app = app

    @property
    def state(self):
        return self.app.state  # tests reach the batcher through the outer app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        seen = {"status": 500, "bytes": 0}

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body":
                seen["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            path = scope["path"]
            if not (path == "/ping" and seen["status"] == 200):
                notes = scope.get(_LOG_KEY, {})
                client = (scope.get("client") or ("-",))[0]
                line = f'{client} "{scope["method"]} {path}" {seen["status"]} {seen["bytes"]}B'
                if "records" in notes:
                    line += f" {notes['records']} records"
                line += f" {1000 * (time.perf_counter() - started):.0f}ms"
                if "error" in notes:
                    line += f" error: {notes['error']}"
                log(line)


def app_from_environ():
    """Uvicorn's factory in each worker process (settings arrive as JSON in the environment)."""
    return create_app(ServeSettings.from_json(os.environ[ENV_SETTINGS]))
