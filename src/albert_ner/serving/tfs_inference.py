"""Request handlers for the SageMaker TensorFlow Serving container (BYOS), standard library only.

`albert-ner export --tfs-package OUT.tar.gz` copies this file into the package as
`code/inference.py`, beside `code/request_formats.py` (a copy of `albert_ner.serving.requests`,
the project server's own request parsing and response encoding) and `code/labels.json` (tags
and scheme). The container then, for every POST /invocations:

  1. calls `input_handler(data, context)`: `data` is the request body stream, `context` a
     namedtuple whose fields include `request_content_type`, `accept_header` and
     `rest_uri` (TF Serving's REST `:predict` URL); the returned string is POSTed there;
  2. calls `output_handler(response, context)` with TF Serving's answer (`status_code`,
     `content`) and sends back the (body, content type) it returns;
  3. answers 500 with {"error": str(exception)} when either handler raises.

The inference container has no TensorFlow Python package, so everything here is plain
Python: the SavedModel's `serving_default` signature tokenizes raw strings itself, and the
tags it returns are turned into entity spans below (`decode_entities`, the same lenient
reading as `albert_ner.data.schemes.TagSet.decode`).

Request bodies and answers are the project server's (see `albert_ner.serving.requests`):
text/plain and application/jsonlines in → JSON lines out, one record per input line (a line
that cannot be read gets {"error": "line N: ..."} in its place); application/json in →
{"predictions": [record, ...]}. A record is {"text", "entities": [{"type", "start", "end",
"text", "score"}]} (end exclusive, Python string offsets, score = the model's probability of
that exact span and type, 4 decimals).

Differences from the project's server, forced by the container: a request the server would
refuse with a 4xx (empty body, malformed JSON document, unsupported content type or Accept)
raises ValueError here, which the container answers with 500 and {"error": message}; and the
container replaces a missing Accept header with application/json, so that exact value cannot
switch text or JSON-lines input to a JSON document (batch transform needs one output line per
input line); any other Accept works as on the server.

Between the two handlers the parsed request is kept in a thread-local: the container calls
both on the same thread (or greenlet, under gevent's patched threading) for one request.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
LABELS_FILE = os.path.join(HERE, "labels.json")
FORMATS_FILE = os.path.join(HERE, "request_formats.py")
SIGNATURE = "serving_default"
# What the container passes when the request had no Accept header (tfs_utils in the
# SageMaker TF Serving container).
CONTAINER_DEFAULT_ACCEPT = "application/json"

_request = threading.local()
_labels: dict | None = None


def _load_formats():
    """The server's request parsing: the packaged copy beside this file, else the library's.

    The copy is loaded by path under its own name: the container does not put code/ on the
    import path, and a module named `requests` there would shadow the HTTP library the
    container itself imports.
    """
    if os.path.exists(FORMATS_FILE):
        spec = importlib.util.spec_from_file_location("albert_ner_request_formats", FORMATS_FILE)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while it executes
        spec.loader.exec_module(module)
        return module
    from albert_ner.serving import requests as module  # running from the repository

    return module


formats = _load_formats()


# ---------------------------------------------------------------------------- the handlers
def input_handler(data, context) -> str:
    """Parses the request and returns the TF Serving REST body {"instances": [texts]}.

    Args:
      data: the request body (a stream with `read()`, or bytes/str).
      context: the container's request context (`request_content_type`, `accept_header`).

    Returns:
      A JSON string (ASCII-only, so any HTTP client sends it unchanged).

    Raises:
      ValueError: a request the project's server refuses with a 4xx (the message says why).
    """
    body = data.read() if hasattr(data, "read") else data
    if isinstance(body, str):
        body = body.encode("utf-8")
    header = getattr(context, "request_content_type", None)
    request_type = formats.CONTENT_TYPES.get(formats.media_type(header))
    try:
        if request_type is None:
            got = f"unsupported Content-Type {header!r}" if header else "missing Content-Type"
            raise formats.RequestError(415, f"{got}; supported: {formats.SUPPORTED_CONTENT_TYPES}")
        parsed = formats.parse_body(body, request_type)
        accept = getattr(context, "accept_header", None)
        if accept == CONTAINER_DEFAULT_ACCEPT and parsed.default_type != formats.JSON:
            accept = None  # indistinguishable from a missing header (module docstring)
        answer_type = formats.response_type(accept, parsed.default_type)
        texts = parsed.texts
        for i, text in enumerate(texts):
            _check_unicode(text, i)
    except formats.RequestError as err:
        raise ValueError(err.message) from None
    _request.pending = (parsed.records, answer_type)
    # TF Serving refuses an empty batch: a request of bad lines only still sends one text.
    return json.dumps({"signature_name": SIGNATURE, "instances": texts or [""]})


def output_handler(data, context) -> tuple[str, str]:
    """Turns TF Serving's {"predictions": [...]} into the server's answer.

    Args:
      data: TF Serving's HTTP response (`status_code`, `content`).
      context: the request context (unused; input_handler fixed the answer format).

    Returns:
      (body, content type): a JSON document or JSON lines, one record per input record.

    Raises:
      ValueError: TF Serving answered an error or something that is not its predictions.
      RuntimeError: called without a preceding input_handler on this thread.
    """
    pending = getattr(_request, "pending", None)
    _request.pending = None
    if pending is None:
        raise RuntimeError("output_handler called without input_handler for this request")
    records, answer_type = pending
    status = getattr(data, "status_code", 200)
    content = data.content if hasattr(data, "content") else data
    try:
        answer = json.loads(content)
    except (TypeError, ValueError):
        raise ValueError(f"TensorFlow Serving answered {status} with a body that is not JSON") from None
    if status != 200 or not isinstance(answer, dict) or "predictions" not in answer:
        reason = answer.get("error") if isinstance(answer, dict) else None
        raise ValueError(f"TensorFlow Serving answered {status}: {reason or repr(answer)}")
    predictions = iter(answer["predictions"])
    scheme = load_labels()["scheme"]
    out = []
    for record in records:
        if isinstance(record, formats.BadRecord):
            out.append({"error": record.message})
            continue
        prediction = next(predictions, None)
        if prediction is None:
            raise ValueError("TensorFlow Serving returned fewer predictions than texts")
        out.append({"text": record, "entities": entities_from_prediction(record, prediction, scheme)})
    return formats.encode_records(out, answer_type).decode("utf-8"), answer_type


def _check_unicode(text: str, index: int) -> None:
    """Refuses lone surrogates (JSON "\\ud800"): they have no UTF-8 form for TF Serving."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise formats.RequestError(400, f"text {index} contains a lone surrogate (not valid Unicode)") from None


# ---------------------------------------------------------------------------- predictions
def load_labels() -> dict:
    """code/labels.json: {"scheme": "bio" | "bioes", "types": [...], "tags": [...]}."""
    global _labels
    if _labels is None:
        with open(LABELS_FILE, encoding="utf-8") as fh:
            _labels = json.load(fh)
    return _labels


def entities_from_prediction(text: str, prediction: dict, scheme: str) -> list[dict]:
    """Entities of one text from its row of TF Serving output.

    Args:
      text: the input text.
      prediction: {"tags": [str] (padded to the batch), "lengths": int,
        "entity_scores": [float] (padded), ...}.
      scheme: "bio" or "bioes".

    Returns:
      [{"type", "start", "end", "text", "score"}] sorted by start.
    """
    length = int(prediction["lengths"])
    if length != len(text):
        raise ValueError(f"TensorFlow Serving saw {length} characters in a text of {len(text)}")
    tags = prediction["tags"][:length]
    scores = prediction["entity_scores"]
    return [
        {"type": type_, "start": start, "end": end, "text": text[start:end],
         "score": round(float(scores[start]), 4)}
        for start, end, type_ in decode_entities(tags, scheme)
    ]


def decode_entities(tags: list[str], scheme: str) -> list[tuple[int, int, str]]:
    """Entity spans (start, end exclusive, type) from tags, read leniently.

    The same reading as `TagSet.decode` (conlleval/seqeval): B-X (and S-X) start an entity;
    I-X continues an open X or else starts one; E-X closes an open X, or else is a
    one-character entity; O, and any tag that does not continue, closes what is open.
    """
    continuing = ("I", "E") if scheme == "bioes" else ("I",)
    spans = []
    open_type, open_start = None, 0
    for i, tag in enumerate(tags):
        prefix, type_ = ("O", None) if tag == "O" else (tag[0], tag[2:])
        if prefix == "M":
            prefix = "I"
        if prefix in continuing and open_type == type_:
            if prefix == "E":
                spans.append((open_start, i + 1, type_))
                open_type = None
            continue
        if open_type is not None:
            spans.append((open_start, i, open_type))
            open_type = None
        if prefix in ("B", "I"):
            open_type, open_start = type_, i
        elif prefix in ("E", "S"):
            spans.append((i, i + 1, type_))
    if open_type is not None:
        spans.append((open_start, len(tags), open_type))
    return spans
