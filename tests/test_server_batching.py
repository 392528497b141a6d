"""Dynamic batching (`serving.batcher`) with a stand-in predictor (no TensorFlow), then the real
server: concurrent requests share model calls, and every answer is still its own. Backpressure:
past the queue limit a request gets 503 with Retry-After, and the server goes on serving.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from serving_helpers import ThreadServer, error_of, request

from albert_ner.data.example import Example
from albert_ner.serving.batcher import DynamicBatcher, ModelNotReady, Overloaded
from albert_ner.serving.loadtest import run_load_test, same_entities


class Recorder:
    """Answers each text with an Example of the same text; records every call's texts."""

    def __init__(self, delay: float = 0.0, fail_on: str | None = None):
        self.calls: list[list[str]] = []
        self.delay = delay
        self.fail_on = fail_on

    def predict(self, texts):
        self.calls.append(list(texts))
        time.sleep(self.delay)  # a model call takes time, so requests queue up meanwhile
        if self.fail_on in texts:
            raise RuntimeError(f"cannot tag {self.fail_on!r}")
        return [Example(t, []) for t in texts]


def run_concurrently(batcher, requests):
    async def main():
        return await asyncio.gather(*(batcher.predict(texts) for texts in requests), return_exceptions=True)

    return asyncio.run(main())


def started(predictor, **options) -> DynamicBatcher:
    batcher = DynamicBatcher(lambda: predictor, **options).start()
    assert batcher.loaded.wait(10) and batcher.status == "ready"
    return batcher


def test_concurrent_requests_share_model_calls_and_keep_their_own_answers():
    recorder = Recorder(delay=0.02)
    batcher = started(recorder, batch_timeout_s=0.05)
    requests = [[f"text {i}-{j}" for j in range(i % 3 + 1)] for i in range(20)]
    answers = run_concurrently(batcher, requests)
    batcher.close()
    assert [[e.text for e in answer] for answer in answers] == requests
    calls = recorder.calls[1:]  # the first call is the warm-up
    assert recorder.calls[0] == ["王小明在北京大学读书。"]
    assert len(calls) < len(requests) / 2, calls
    assert sorted(t for call in calls for t in call) == sorted(t for r in requests for t in r)
    assert batcher.requests == len(requests) and batcher.model_calls == len(calls)
    assert batcher.texts == sum(map(len, requests)) and batcher.model_seconds >= 0.02 * len(calls)


def test_the_token_budget_bounds_a_merged_call():
    recorder = Recorder(delay=0.01)
    batcher = started(recorder, max_batch_tokens=25, batch_timeout_s=0.05)
    requests = [["x" * 9] for _ in range(12)]  # 10 tokens each: two fit in 25, three do not
    run_concurrently(batcher, requests)
    batcher.close()
    assert all(len(call) <= 2 for call in recorder.calls[1:])
    # A request over the budget runs alone and whole.
    batcher = started(recorder := Recorder(), max_batch_tokens=5)
    (answer,) = run_concurrently(batcher, [["y" * 50]])
    batcher.close()
    assert answer[0].text == "y" * 50 and recorder.calls[1:] == [["y" * 50]]


def test_without_batching_every_request_is_its_own_call():
    recorder = Recorder(delay=0.01)
    batcher = started(recorder, enabled=False)
    requests = [[f"t{i}", f"u{i}"] for i in range(8)]
    run_concurrently(batcher, requests)
    batcher.close()
    assert sorted(recorder.calls[1:]) == sorted(requests)


def test_a_failing_request_does_not_fail_the_requests_merged_with_it():
    recorder = Recorder(delay=0.01, fail_on="bad")
    batcher = started(recorder, batch_timeout_s=0.05)
    answers = run_concurrently(batcher, [["a"], ["bad"], ["b"]])
    batcher.close()
    assert [e.text for e in answers[0]] == ["a"] and [e.text for e in answers[2]] == ["b"]
    assert isinstance(answers[1], RuntimeError) and "bad" in str(answers[1])


def test_a_failed_load_is_reported_and_refuses_requests():
    def load():
        raise OSError("weights.npz is truncated")

    batcher = DynamicBatcher(load, source="runs/broken").start()
    assert batcher.loaded.wait(10)
    assert batcher.status == "failed" and "runs/broken" in batcher.error and "truncated" in batcher.error
    (answer,) = run_concurrently(batcher, [["a"]])
    assert isinstance(answer, ModelNotReady) and "truncated" in str(answer)


def test_a_predictor_that_fails_its_warm_up_is_never_ready():
    batcher = DynamicBatcher(lambda: Recorder(fail_on="王小明在北京大学读书。")).start()
    assert batcher.loaded.wait(10) and batcher.status == "failed" and "cannot tag" in batcher.error


def test_close_answers_what_is_queued():
    recorder = Recorder(delay=0.05)
    batcher = started(recorder, enabled=False)

    async def main():
        tasks = [asyncio.ensure_future(batcher.predict([f"q{i}"])) for i in range(4)]
        await asyncio.sleep(0.01)
        await asyncio.to_thread(batcher.close)
        return await asyncio.gather(*tasks)

    answers = asyncio.run(main())
    assert [a[0].text for a in answers] == [f"q{i}" for i in range(4)]


def test_a_batch_closes_once_it_is_as_large_as_recent_batches():
    # Four clients that each wait for their answer before sending again (the load test's
    # pattern): after the first batch, waiting out a long timeout would only idle the model.
    recorder = Recorder(delay=0.01)
    batcher = started(recorder, batch_timeout_s=1.0)

    async def client(i):
        for round_ in range(5):
            await batcher.predict([f"client {i} round {round_}"])

    async def main():
        await asyncio.gather(*(client(i) for i in range(4)))

    began = time.monotonic()
    asyncio.run(main())
    elapsed = time.monotonic() - began
    batcher.close()
    calls = recorder.calls[1:]
    assert [len(call) for call in calls] == [4] * 5, calls
    # The first batch has no history and waits its full second; the other four close as soon
    # as the fourth client is back (without the early close: 5 s).
    assert 1.0 <= elapsed < 2.5, elapsed


def test_the_early_close_still_takes_everything_already_queued():
    gate = Gate()
    batcher = started(gate, batch_timeout_s=0.2)

    async def main():
        first = await batcher.predict(["alone"])  # a batch of one: the bar is now one request
        gate.gate.clear()
        running = asyncio.ensure_future(batcher.predict(["running"]))
        await asyncio.to_thread(wait_for, lambda: len(gate.calls) == 3)  # in the model call
        queued = [asyncio.ensure_future(batcher.predict([f"queued {i}"])) for i in range(3)]
        await asyncio.to_thread(wait_for, lambda: batcher.waiting == 3)
        gate.gate.set()
        return first, await asyncio.gather(running, *queued)

    gate.gate.set()
    first, answers = asyncio.run(main())
    batcher.close()
    assert first[0].text == "alone" and [a[0].text for a in answers] == ["running"] + [f"queued {i}" for i in range(3)]
    assert gate.calls[1:] == [["alone"], ["running"], [f"queued {i}" for i in range(3)]]


def test_options_are_checked():
    with pytest.raises(ValueError, match="max_batch_tokens"):
        DynamicBatcher(Recorder, max_batch_tokens=0)
    with pytest.raises(ValueError, match="timeout"):
        DynamicBatcher(Recorder, batch_timeout_s=-1)
    with pytest.raises(ValueError, match="max_queue"):
        DynamicBatcher(Recorder, max_queue=0)


class Gate(Recorder):
    """A model call that blocks until `open` (the warm-up excepted): the queue fills meanwhile."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()

    def predict(self, texts):
        self.calls.append(list(texts))
        if len(self.calls) > 1:  # not the warm-up
            self.gate.wait(30)
        return [Example(t, []) for t in texts]


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_past_the_queue_limit_requests_are_refused_until_the_queue_drains():
    gate = Gate()
    batcher = started(gate, max_queue=2, batch_timeout_s=0)

    async def main():
        running = asyncio.ensure_future(batcher.predict(["running"]))
        await asyncio.to_thread(wait_for, lambda: len(gate.calls) == 2)  # in the model call
        queued = [asyncio.ensure_future(batcher.predict([f"queued {i}"])) for i in range(2)]
        await asyncio.sleep(0)
        assert batcher.waiting == 2
        with pytest.raises(Overloaded, match="2 requests are waiting.*limit 2") as refused:
            await batcher.predict(["one too many"])
        assert refused.value.retry_after >= 1
        gate.gate.set()
        answers = await asyncio.gather(running, *queued)
        after = await batcher.predict(["after"])  # the queue drained: accepted again
        return answers, after

    answers, after = asyncio.run(main())
    batcher.close()
    assert [a[0].text for a in answers] == ["running", "queued 0", "queued 1"] and after[0].text == "after"
    assert batcher.rejected == 1 and all("one too many" not in call for call in gate.calls)


def test_retry_after_is_the_time_the_queue_ahead_should_take():
    batcher = DynamicBatcher(Recorder)
    assert batcher._retry_after(100) == 1  # nothing measured yet
    batcher.requests, batcher.model_seconds = 10, 0.5  # 50 ms a request
    assert batcher._retry_after(100) == 5 and batcher._retry_after(1) == 1


# ---------------------------------------------------------------- servers over stand-ins
def test_the_server_answers_503_with_retry_after_past_the_queue_limit(tmp_path):
    gate = Gate()
    server = ThreadServer(tmp_path, batcher=DynamicBatcher(lambda: gate, max_queue=1, batch_timeout_s=0))
    try:
        assert server.wait_loaded()
        url = server.url + "/invocations"
        answers = {}

        def send(name):
            answers[name] = request(url, name.encode(), "text/plain")

        first = threading.Thread(target=send, args=("first",))
        first.start()
        wait_for(lambda: len(gate.calls) == 2)  # the first request is in the model
        second = threading.Thread(target=send, args=("second",))
        second.start()
        wait_for(lambda: server.batcher.waiting == 1)
        refused = request(url, b"third", "text/plain")
        status, message = error_of(refused)
        assert status == 503 and "1 requests are waiting" in message and "ALBERT_NER_MAX_QUEUE" in message
        assert int(refused[1]["Retry-After"]) >= 1
        gate.gate.set()
        first.join(30)
        second.join(30)
        assert [answers[n][0] for n in ("first", "second")] == [200, 200]
        assert json.loads(request(server.url + "/ping")[2])["rejected"] == 1
        status, _, out = request(url, b"later", "text/plain")
        assert status == 200 and json.loads(out)["text"] == "later"
    finally:
        gate.gate.set()
        server.stop()


def test_a_load_test_against_a_tiny_queue_counts_busy_refusals_and_nothing_else(tmp_path):
    """A slow stand-in model and room for one waiting request: many 503s, no other 5xx,
    every answer that is not a refusal right, and the server still serving afterwards."""
    server = ThreadServer(tmp_path, batcher=DynamicBatcher(lambda: Recorder(delay=0.03), max_queue=1))
    try:
        assert server.wait_loaded()
        texts = [f"第{i}句，李鹏在北京。" for i in range(10)]
        result = run_load_test(server.url, texts, concurrency=8, requests=60, malformed=6,
                               expected=lambda text: [])
        assert result["rejected_busy"] > 0
        assert result["status_counts"]["503"] == result["rejected_busy"]
        assert set(result["status_counts"]) <= {"200", "400", "415", "503"}
        assert result["errors_5xx"] == result["wrong_answers"] == result["transport_errors"] == 0
        assert result["good_not_200"] == result["malformed_not_4xx"] == 0
        status, _, out = request(server.url + "/invocations", json.dumps({"text": "北京"}).encode(), "application/json")
        assert status == 200 and json.loads(out)["predictions"] == [{"text": "北京", "entities": []}]
    finally:
        server.stop()


# ---------------------------------------------------------------- the real server
@pytest.fixture(scope="module")
def served(trained_model):
    server = ThreadServer(trained_model, batch_timeout_ms=20)
    assert server.wait_loaded(), server.batcher.error
    yield server
    server.stop()


def test_the_server_merges_concurrent_requests(served, trained_model):
    from albert_ner.predict import Predictor

    predictor = Predictor.from_model_dir(trained_model)
    texts = [f"{i}日，李鹏在北京会见了日本外务大臣。" for i in range(48)]
    want = {ex.text: [e.to_json(ex.text) for e in ex.entities] for ex in predictor.predict(texts)}
    calls_before = served.batcher.model_calls

    def one(text):
        status, _, out = request(served.url + "/invocations", json.dumps({"text": text}).encode(), "application/json")
        return status, json.loads(out)["predictions"][0]

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, texts))
    assert all(status == 200 for status, _ in answers)
    for text, (_, record) in zip(texts, answers):
        # Other batch shapes than the offline call: scores may differ in the last float bits.
        assert record["text"] == text and same_entities(record["entities"], want[text])
    assert served.batcher.model_calls - calls_before < len(texts)
    ping = json.loads(request(served.url + "/ping")[2])
    assert ping["texts"] >= len(texts) and ping["model_seconds"] > 0 and ping["rejected"] == 0


def test_run_load_test_counts_right_answers_and_refused_bad_requests(served, trained_model):
    from albert_ner.predict import Predictor

    predictor = Predictor.from_model_dir(trained_model)
    texts = ["李鹏在北京。", "日本外务大臣访问上海。", "", "国务院"]
    want = {ex.text: [e.to_json(ex.text) for e in ex.entities] for ex in predictor.predict(texts)}
    result = run_load_test(served.url, texts, concurrency=4, requests=40, malformed=12, expected=want)
    assert result["status_counts"].get("200") == 40
    assert sum(n for s, n in result["status_counts"].items() if s.startswith("4")) == 12
    assert result["errors_5xx"] == result["wrong_answers"] == result["malformed_not_4xx"] == 0
    assert result["transport_errors"] == 0 and result["requests_per_s"] > 0
    assert result["latency_ms"]["p50"] <= result["latency_ms"]["p95"] <= result["latency_ms"]["p99"]
    # And it notices a wrong answer.
    wrong = dict(want, **{"李鹏在北京。": [{"type": "PER", "start": 0, "end": 1, "text": "李"}]})
    result = run_load_test(served.url, texts, concurrency=2, requests=8, malformed=0, expected=wrong)
    assert result["wrong_answers"] == 2 and result["wrong_examples"]
