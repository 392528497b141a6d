"""Dynamic batching: concurrent requests merged into one model call, on one model thread.

The `DynamicBatcher` owns the only thread that touches TensorFlow. That thread loads the
model, warms it up with one real prediction (so the first request does not pay for graph
set-up), then takes requests from a queue: it starts a batch with the oldest request and adds
the next ones until their characters reach `max_batch_tokens` or `batch_timeout_s` has passed
since it started — TF Serving's `max_batch_size` / `batch_timeout_micros`, counted in
characters because a Chinese character is a token here. While a batch runs, new requests
queue up, so under load batches fill without waiting. TensorFlow releases the GIL while it
computes, so the event loop keeps accepting and parsing requests meanwhile.

A batch also closes early, before the timeout, once it holds as many requests as the largest
of the last `RECENT_BATCHES` batches: a fixed set of clients that each wait for their answer
(application threads, batch-transform workers, the load test's 16 clients) come back together
after each batch, and once all of them are in, waiting out the timeout only leaves the model
idle (the load test measured 2.9 ms of idle between batches of 32 ms, most of it this wait).
Whatever is already queued still joins the batch, so the early close never makes batches
smaller than the queue allows.

`enabled=False` gives one model call per request (the same thread and queue), the baseline
the load test compares against.

Backpressure: once `max_queue` requests wait for the model, `predict` refuses new ones with
`Overloaded` (the server answers 503 with Retry-After) instead of letting the queue, and every
client's latency, grow without bound.

Example:
  batcher = DynamicBatcher(lambda: Predictor.from_model_dir("runs/msra")).start()
  examples = await batcher.predict(["王小明在北京大学读书。"])  # from a coroutine
"""

from __future__ import annotations

import asyncio
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from albert_ner.serving.logs import log

# Characters per merged model call. `Predictor` pads and splits a call into its own
# length-bucketed batches (8,192 padded characters each), so this bounds latency, not memory.
DEFAULT_MAX_BATCH_TOKENS = 8192
# How long the first request of a batch waits for company when the queue is empty.
DEFAULT_BATCH_TIMEOUT_MS = 2.0
# Requests that may wait for the model before new ones are refused. Two full merged batches
# of one-sentence requests (8,192 characters hold ~140 MSRA sentences), so batches stay full
# under any load the model keeps up with; and a wait well below SageMaker's 60-second
# invocation timeout (256 requests: ~2 s for the chars model, ~9 s for ALBERT-tiny at the
# request rates of the load test), so a client hears "busy" instead of timing out.
DEFAULT_MAX_QUEUE = 256
WARMUP_TEXT = "王小明在北京大学读书。"
# Batches whose sizes (in requests) set the early close: long enough that one batch cut short
# by a slow client does not lower the bar for the next ones, short enough to follow the load.
RECENT_BATCHES = 16


@dataclass
class _Job:
    """One request's texts and the future its coroutine awaits (resolved on its loop)."""

    texts: list[str]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    # Every text costs at least one token, so 10,000 empty texts still count.
    tokens: int = field(init=False)

    def __post_init__(self):
        self.tokens = sum(len(t) for t in self.texts) + len(self.texts)


_STOP = object()


class ModelNotReady(Exception):
    """Raised by `predict` while the model is loading or after it failed to load."""


class Overloaded(Exception):
    """Raised by `predict` when `max_queue` requests are already waiting for the model.

    Attributes:
        retry_after: whole seconds the queue ahead is expected to take (at least 1).
    """

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class DynamicBatcher:
    """Loads, warms up and runs the predictor on one thread; merges queued requests.

    Args:
        load: returns a predictor (`predict(texts) -> list[Example]`); runs on the model thread.
        max_batch_tokens: characters (plus one per text) per merged call; a larger request
            runs alone, never split.
        batch_timeout_s: the longest a batch waits for more requests once it has one.
        enabled: False runs one model call per request.
        source: what is loaded (the model directory), for messages.
        max_queue: requests that may wait for the model; `predict` raises `Overloaded` beyond.
    """

    def __init__(
        self,
        load: Callable[[], object],
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        batch_timeout_s: float = DEFAULT_BATCH_TIMEOUT_MS / 1000,
        enabled: bool = True,
        source: str = "the model",
        max_queue: int = DEFAULT_MAX_QUEUE,
    ):
        if max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be at least 1, got {max_batch_tokens}")
        if batch_timeout_s < 0:
            raise ValueError(f"the batch timeout must not be negative, got {batch_timeout_s}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue}")
        self._load = load
        self.max_batch_tokens = max_batch_tokens
        self.batch_timeout_s = batch_timeout_s
        self.enabled = enabled
        self.source = source
        self.max_queue = max_queue
        self.predictor = None
        self.error: str | None = None
        self.loaded = threading.Event()  # set when ready or failed
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._carry: _Job | None = None  # taken from the queue but over the last batch's budget
        self._recent_sizes: deque[int] = deque(maxlen=RECENT_BATCHES)  # requests per batch
        self._thread = threading.Thread(target=self._run, name="model", daemon=True)
        # Counters for /ping and the load test: how much merging happened, how long the model
        # worked, how many requests were refused. Each is written by one thread only.
        self.model_calls = 0
        self.requests = 0
        self.texts = 0
        self.model_seconds = 0.0
        self.rejected = 0  # event-loop side

    # ------------------------------------------------------------------ event-loop side
    def start(self) -> "DynamicBatcher":
        self._thread.start()
        return self

    @property
    def waiting(self) -> int:
        """Requests queued for the model and not yet in a running batch (approximate)."""
        return self._queue.qsize() + (self._carry is not None)

    @property
    def status(self) -> str:
        """"loading", "ready" (loaded and warmed up) or "failed"."""
        if self.predictor is not None:
            return "ready"
        return "failed" if self.loaded.is_set() else "loading"

    async def predict(self, texts: list[str]) -> list:
        """The predictor's `Example`s for `texts`, computed in some batch on the model thread.

        Raises:
            ModelNotReady: while loading or after a failed load (the message says which).
            Overloaded: `max_queue` requests are already waiting.
        """
        if self.predictor is None:
            raise ModelNotReady(self.error or "model is still loading; retry when /ping answers 200")
        waiting = self.waiting
        if waiting >= self.max_queue:
            self.rejected += 1
            raise Overloaded(f"server busy: {waiting} requests are waiting for the model (limit "
                             f"{self.max_queue}); retry later", self._retry_after(waiting))
        loop = asyncio.get_running_loop()
        job = _Job(list(texts), loop.create_future(), loop)
        self._queue.put(job)
        return await job.future

    def _retry_after(self, waiting: int) -> int:
        """Seconds the `waiting` requests should take at the model's average pace so far."""
        per_request = self.model_seconds / self.requests if self.requests else 0.0
        return max(1, math.ceil(waiting * per_request))

    def close(self, timeout: float | None = None) -> None:
        """Finishes every queued request, then stops the model thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    # ------------------------------------------------------------------ model thread
    def _run(self) -> None:
        if not self._load_and_warm_up():
            return
        while True:
            job = self._carry if self._carry is not None else self._queue.get()
            self._carry = None
            if job is _STOP:
                self._drain()
                return
            batch, stop = self._collect(job)
            self._run_batch(batch)
            if stop:
                self._drain()
                return

    def _load_and_warm_up(self) -> bool:
        started = time.monotonic()
        try:
            predictor = self._load()
            predictor.predict([WARMUP_TEXT])  # a real prediction: graph set-up happens now
        except Exception as err:  # noqa: BLE001 — any failure must reach /ping and the log
            self.error = f"model not loaded from {self.source}: {type(err).__name__}: {err}"
            log(self.error)
            self.loaded.set()
            return False
        self.predictor = predictor
        self.loaded.set()
        log(f"model {self.source} loaded and warmed up in {time.monotonic() - started:.1f}s")
        return True

    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        """`first` plus the requests that arrive within the timeout and fit the budget."""
        batch, tokens = [first], first.tokens
        if not self.enabled:
            return batch, False
        deadline = time.monotonic() + self.batch_timeout_s
        # No history yet: wait out the timeout, as a fixed-size batcher would.
        enough = max(self._recent_sizes, default=math.inf)
        while tokens < self.max_batch_tokens:
            remaining = deadline - time.monotonic()
            try:
                if remaining > 0 and len(batch) < enough:
                    job = self._queue.get(timeout=remaining)
                else:  # past the deadline or as large as recent batches: take only what is queued
                    job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                return batch, True
            if tokens + job.tokens > self.max_batch_tokens:
                self._carry = job  # first of the next batch
                break
            batch.append(job)
            tokens += job.tokens
        self._recent_sizes.append(len(batch))
        return batch, False

    def _run_batch(self, batch: list[_Job]) -> None:
        texts = [t for job in batch for t in job.texts]
        started = time.perf_counter()
        try:
            examples = self.predictor.predict(texts)
        except Exception as err:  # noqa: BLE001 — delivered to the waiting requests
            if len(batch) > 1:
                # Retry one by one, so only the request that breaks the model fails.
                for job in batch:
                    self._run_batch([job])
                return
            self._count(batch, texts, started)
            _deliver([(batch[0], None, err)])
            return
        self._count(batch, texts, started)
        outcomes, start = [], 0
        for job in batch:
            outcomes.append((job, examples[start : start + len(job.texts)], None))
            start += len(job.texts)
        _deliver(outcomes)

    def _count(self, batch: list[_Job], texts: list[str], started: float) -> None:
        self.model_seconds += time.perf_counter() - started
        self.model_calls += 1
        self.requests += len(batch)
        self.texts += len(texts)

    def _drain(self) -> None:
        """Runs whatever is still queued (shutdown must not drop accepted requests)."""
        while True:
            try:
                job = self._carry if self._carry is not None else self._queue.get_nowait()
            except queue.Empty:
                return
            self._carry = None
            if job is not _STOP:
                self._run_batch([job])


def _deliver(outcomes: list[tuple[_Job, list | None, BaseException | None]]) -> None:
    """Completes the jobs' futures on their own event loops (futures are not thread-safe).

    One wake-up per loop and batch, not per request: on asyncio each `call_soon_threadsafe`
    writes to the loop's wake-up socket, a system call the event loop then answers as well
    (about 5 % of the server's own CPU time per request; on uvloop it is too little to see).
    """
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_finish, items)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more


def _finish(items) -> None:
    for job, result, error in items:
        if job.future.done():  # the client went away and the request was cancelled
            continue
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)
