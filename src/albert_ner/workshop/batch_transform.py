"""SageMaker batch transform, done locally against an inference server's HTTP port.

A batch transform job reads each input object, splits it into records, sends the records to
the container's `POST /invocations` in mini-batches and writes `<object name>.out`. This module
does the same against any server that speaks the hosting contract (`albert-ner serve` on
127.0.0.1, the TF Serving emulator, or a container), so a notebook or test can see exactly what
the job would write without paying for instances. What it reproduces:

  SplitType Line         one record per non-blank line (blank lines are skipped: they hold no
                         record and could not be joined)
  BatchStrategy          SingleRecord: one record per request; MultiRecord: as many records as
                         fit in MaxPayloadInMB, newline-separated
  MaxPayloadInMB         a record larger than the limit fails the job, as on SageMaker
  JoinSource Input       each output record is added to its input JSON object under
                         "SageMakerOutput"; an input that is not an object becomes
                         {"SageMakerInput": ..., "SageMakerOutput": ...}
  AssembleWith Line      output records are written one per line, in input order
  MaxConcurrentTransforms  mini-batches in flight at once (order is kept regardless)

Any non-200 answer fails the whole job with the status and the server's message (SageMaker
does the same); a MultiRecord answer with a different number of lines than it was sent also
fails, because the records could not be joined.

Example:
  out = run_local_transform("http://127.0.0.1:8080", "texts.jsonl", "out/",
                            strategy="MultiRecord", max_payload_mb=6, join_source="Input")
  # out/texts.jsonl.out: {"text": "...", "SageMakerOutput": {"text": "...", "entities": [...]}}
"""

from __future__ import annotations

import dataclasses
import json
import os
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

JSONLINES = "application/jsonlines"
STRATEGIES = ("SingleRecord", "MultiRecord")
JOIN_KEY_OUTPUT = "SageMakerOutput"
JOIN_KEY_INPUT = "SageMakerInput"


class TransformError(RuntimeError):
    """The job fails: what a batch transform job's FailureReason would say."""


@dataclasses.dataclass
class TransformReport:
    """What a local transform did: records, requests and where the output went."""

    output: Path
    records: int
    requests: int
    error_records: int  # output records that carry an "error" key (bad input records)


def split_records(data: bytes, source: str = "input") -> list[bytes]:
    """SplitType Line: the non-blank lines of an object, without their line endings.

    Raises TransformError when the object is not UTF-8 (the records could not be joined).
    """
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TransformError(f"{source}: not UTF-8 at byte {err.start}") from None
    return [line.rstrip(b"\r") for line in data.split(b"\n") if line.strip()]


def mini_batches(records: list[bytes], strategy: str, max_payload_bytes: int, source: str = "input") -> list[list[int]]:
    """Indices of the records each request carries, in order.

    Args:
      records: the split records.
      strategy: "SingleRecord" or "MultiRecord".
      max_payload_bytes: the request size limit (MaxPayloadInMB in bytes).
    Returns:
      one list of record indices per request.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    batches: list[list[int]] = []
    current: list[int] = []
    size = 0
    for index, record in enumerate(records):
        if len(record) > max_payload_bytes:
            raise TransformError(
                f"{source}: record {index + 1} is {len(record)} bytes, over MaxPayloadInMB "
                f"({max_payload_bytes} bytes)")
        added = len(record) + (1 if current else 0)  # the newline between records
        if current and (strategy == "SingleRecord" or size + added > max_payload_bytes):
            batches.append(current)
            current, size, added = [], 0, len(record)
        current.append(index)
        size += added
    if current:
        batches.append(current)
    return batches


def join_record(input_record: bytes, output_record: bytes) -> dict:
    """JoinSource Input for JSON: the output added to the input object."""
    source = json.loads(input_record)
    output = json.loads(output_record)
    if isinstance(source, dict):
        joined = dict(source)
        joined[JOIN_KEY_OUTPUT] = output
        return joined
    return {JOIN_KEY_INPUT: source, JOIN_KEY_OUTPUT: output}


def post(url: str, body: bytes, content_type: str, accept: str, timeout: float = 600.0) -> tuple[int, bytes, str]:
    """POST to `url`; (status, body, content type) for any HTTP answer, TransformError when
    the server cannot be reached."""
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": content_type, "Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers.get("Content-Type", "")
    except urllib.error.URLError as err:
        raise TransformError(f"cannot reach the model server at {url}: {err.reason}") from None


def execution_parameters(base_url: str, timeout: float = 10.0) -> dict:
    """The server's GET /execution-parameters (batch transform's defaults), {} if it has none."""
    try:
        with urllib.request.urlopen(base_url.rstrip("/") + "/execution-parameters", timeout=timeout) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, ValueError):
        return {}


def transform_records(
    base_url: str,
    records: list[bytes],
    *,
    strategy: str = "MultiRecord",
    max_payload_mb: float = 6.0,
    content_type: str = JSONLINES,
    accept: str = JSONLINES,
    join_source: str | None = "Input",
    concurrency: int = 1,
    source: str = "input",
) -> tuple[list[str], int]:
    """Sends the records as batch transform would; returns (output lines, requests sent)."""
    url = base_url.rstrip("/") + "/invocations"
    batches = mini_batches(records, strategy, int(max_payload_mb * 2**20), source)

    def send(indices: list[int]) -> list[bytes]:
        status, body, _ = post(url, b"\n".join(records[i] for i in indices), content_type, accept)
        if status != 200:
            message = body.decode("utf-8", errors="replace").strip()[:300]
            raise TransformError(f"{source}: records {indices[0] + 1}-{indices[-1] + 1}: the model "
                                 f"server answered {status}: {message}")
        lines = split_records(body, f"{source} (response)")
        if len(lines) != len(indices):
            raise TransformError(f"{source}: sent {len(indices)} records, got {len(lines)} output "
                                 "lines back; they cannot be matched to their inputs")
        return lines

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        answers = list(pool.map(send, batches))  # map keeps the batches' order
    output = []
    for indices, lines in zip(batches, answers):
        for index, line in zip(indices, lines):
            if join_source == "Input":
                try:
                    joined = join_record(records[index], line)
                except json.JSONDecodeError as err:
                    raise TransformError(f"{source}: record {index + 1} cannot be joined: not JSON ({err})") from None
                output.append(json.dumps(joined, ensure_ascii=False))
            else:
                output.append(line.decode("utf-8"))
    return output, len(batches)


def run_local_transform(
    base_url: str,
    input_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    strategy: str = "MultiRecord",
    max_payload_mb: float = 6.0,
    content_type: str = JSONLINES,
    accept: str = JSONLINES,
    join_source: str | None = "Input",
    concurrency: int = 1,
) -> TransformReport:
    """Transforms one JSON-lines file through the server at `base_url` into OUTPUT_DIR/<name>.out.

    Args:
      base_url: the server root, e.g. http://127.0.0.1:8080.
      input_path: the input object (one record per line).
      output_dir: where `<input name>.out` is written (created).
      strategy, max_payload_mb, content_type, accept, join_source, concurrency: the job's
        BatchStrategy, MaxPayloadInMB, ContentType, Accept, JoinSource and
        MaxConcurrentTransforms. AssembleWith is Line.
    Returns:
      a TransformReport; raises TransformError when the job would fail.
    """
    input_path = Path(input_path)
    records = split_records(input_path.read_bytes(), str(input_path))
    lines, requests = transform_records(
        base_url, records, strategy=strategy, max_payload_mb=max_payload_mb, content_type=content_type,
        accept=accept, join_source=join_source, concurrency=concurrency, source=input_path.name)
    target = Path(output_dir) / f"{input_path.name}.out"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return TransformReport(target, len(records), requests, sum(_has_error(line) for line in lines))


def _has_error(line: str) -> bool:
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return False
    if isinstance(value, dict) and JOIN_KEY_OUTPUT in value:
        value = value[JOIN_KEY_OUTPUT]
    return isinstance(value, dict) and "error" in value


def read_output(path: str | os.PathLike) -> list[dict]:
    """The records of a `.out` file (JSON lines)."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
